// A real Yjs (13.6) editor against syncd's local API, driven by tests/interop/test_docs_yjs.py.
// Usage: node --experimental-websocket yjs_client.mjs SCENARIO with SYNCD_URL set (the
// bridge's ws:// URL with ?token=). It edits a new document through doc.update, one update per
// transaction, then opens it again as a fresh editor would, and prints one JSON line: the
// document's id, its text and content as this editor holds them and as the fresh open got them.
// SCENARIO: "rich" (text with formats, embeds and astral characters at character boundaries,
// maps, arrays, XML, deletions, an undo) or "split" (edits at UTF-16 offsets inside surrogate
// pairs, which Yjs turns into U+FFFD).
import * as Y from 'yjs'

const b64 = (u8) => Buffer.from(u8).toString('base64')
const ws = new WebSocket(process.env.SYNCD_URL)
await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject })
let nextId = 1
const pending = new Map()
ws.onmessage = (m) => {
  const msg = JSON.parse(m.data)
  const p = pending.get(msg.id)
  if (!p) return
  pending.delete(msg.id)
  if (msg.error) p.reject(new Error(JSON.stringify(msg.error)))
  else p.resolve(msg.result)
}
const call = (method, params) => new Promise((resolve, reject) => {
  const id = nextId++
  pending.set(id, { resolve, reject })
  ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }))
})

const content = (doc) => JSON.stringify({
  text: doc.getText('content').toDelta(),
  xml: doc.getXmlFragment('prosemirror').toString(),
  map: Object.entries(doc.getMap('meta').toJSON()).sort(),
  array: doc.getArray('list').toJSON(),
})

const opened = await call('doc.open', {})
const doc = new Y.Doc()
const updates = []
doc.on('update', (update) => updates.push(update))
const text = doc.getText('content')
if (process.argv[2] === 'split') {
  text.insert(0, 'a😀b👨‍👩‍👧c')
  text.insert(2, 'X') // between the two halves of 😀
  text.delete(7, 1) // the second half of 👨 only
} else {
  text.insert(0, 'héllo 😀 wörld 👨‍👩‍👧 𝄞 end', { bold: true })
  text.delete(6, 2) // 😀, two UTF-16 units
  text.insert(6, '中文 ')
  text.format(0, 5, { italic: true })
  text.insertEmbed(3, { img: 'x.png' })
  const undo = new Y.UndoManager(text)
  text.insert(0, 'undone ')
  undo.stopCapturing()
  undo.undo()
  const paragraph = new Y.XmlElement('paragraph')
  paragraph.setAttribute('align', 'left')
  const inner = new Y.XmlText()
  inner.insert(0, 'para 😀', { bold: true })
  paragraph.insert(0, [inner])
  doc.getXmlFragment('prosemirror').insert(0, [paragraph])
  doc.getMap('meta').set('title', 'Ünïcode 😀')
  doc.getMap('meta').set('n', 2 ** 40)
  doc.getMap('meta').set('removed', true)
  doc.getMap('meta').delete('removed')
  doc.getArray('list').push(['one', 2, null, { three: [3] }])
  doc.getArray('list').delete(1, 1)
  for (let i = 0; i < 200; i++) text.insert(text.length, i % 10 === 0 ? '🎉' : 'k') // typing
}
for (const update of updates) await call('doc.update', { id: opened.id, update: b64(update) })
const reopened = await call('doc.open', { id: opened.id })
const fresh = new Y.Doc()
let freshContent = null
let error = null
try {
  Y.applyUpdate(fresh, Buffer.from(reopened.state, 'base64'))
  freshContent = content(fresh)
} catch (e) {
  error = String(e)
}
process.stdout.write(JSON.stringify({
  id: opened.id, text: text.toString(), content: content(doc), fresh: freshContent, error,
}) + '\n')
ws.close()
