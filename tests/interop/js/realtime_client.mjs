// supabase-js (realtime-js, vsn 2.0.0) against devcloud's Realtime server, driven by
// tests/interop/test_realtime_js.py. Usage: node --experimental-websocket realtime_client.mjs
// with SUPABASE_URL, SUPABASE_ANON_KEY and USER_TOKEN set. Prints one JSON object per line
// for each thing the client observes; reads "finish" on stdin to leave and exit.
import { createInterface } from 'node:readline'
import { createClient } from '@supabase/supabase-js'

const out = (kind, data) => process.stdout.write(JSON.stringify({ kind, data }) + '\n')

const supabase = createClient(process.env.SUPABASE_URL, process.env.SUPABASE_ANON_KEY, {
  auth: { persistSession: false, autoRefreshToken: false },
})
await supabase.realtime.setAuth(process.env.USER_TOKEN)

const channel = supabase.channel('room1', {
  config: { broadcast: { self: true, ack: true }, presence: { key: 'js-client' } },
})
channel
  .on('postgres_changes', { event: '*', schema: 'public', table: 'notes', filter: 'org=eq.org-a' },
    (payload) => out('pg', payload))
  .on('broadcast', { event: 'cursor' }, (payload) => out('broadcast', payload))
  .on('presence', { event: 'sync' }, () => out('presence', channel.presenceState()))
  .on('system', {}, (payload) => out('system', payload))
  .subscribe(async (status, err) => {
    out('status', { status, error: err ? String(err) : null })
    if (status !== 'SUBSCRIBED') return
    out('track', await channel.track({ online_at: '2026-08-21T00:00:00Z' }))
    out('send', await channel.send({ type: 'broadcast', event: 'cursor', payload: { x: 1 } }))
  })

const input = createInterface({ input: process.stdin })
for await (const line of input) {
  if (line.trim() === 'finish') break
}
out('remove', await supabase.removeChannel(channel))
await supabase.realtime.disconnect()
process.exit(0)
