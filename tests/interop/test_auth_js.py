"""supabase-js 2.119 under node against devcloud's /auth/v1 and /functions/v1: sign up, sign
in, refresh, getUser, the built-in functions (an SSE stream arrives as a raw Response), sign
out. Needs node ≥ 20.10 and ``npm ci`` in tests/interop/js."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

from devcloud.server import RunningDevcloud
from tests.helpers import MS

JS_DIR = Path(__file__).parent / "js"

SCRIPT = """
import { createClient } from "@supabase/supabase-js";
const [url, key] = process.argv.slice(1);
const out = {};
const client = createClient(url, key, { auth: { persistSession: false, autoRefreshToken: false } });
const creds = { email: "js@example.com", password: "s3cret-pw" };
const signUp = await client.auth.signUp(creds);
out.signUpError = signUp.error?.message ?? null;
const signIn = await client.auth.signInWithPassword(creds);
out.userId = signIn.data.user?.id ?? null;
const firstRefresh = signIn.data.session?.refresh_token;
const refreshed = await client.auth.refreshSession();
out.rotated = refreshed.data.session?.refresh_token !== firstRefresh && !refreshed.error;
const user = await client.auth.getUser();
out.email = user.data.user?.email ?? null;
const wrong = await client.auth.signInWithPassword({ ...creds, password: "nope-nope" });
out.wrongCode = wrong.error?.code ?? null;
const chatBody = { agentSlug: "a", userMessage: "hi js" };
const chat = await client.functions.invoke("agent-chat", { body: chatBody });
out.chat = chat.data?.content ?? chat.error?.message;
const streamed = await client.functions.invoke("ai-proxy", {
  body: { stream: true, messages: [{ role: "user", content: "js stream" }] },
});
out.stream = streamed.data instanceof Response ? await streamed.data.text() : null;
out.signOutError = (await client.auth.signOut()).error?.message ?? null;
const after = await client.auth.getUser(signIn.data.session.access_token);
out.afterSignOut = after.error?.name ?? null;
console.log(JSON.stringify(out));
"""


async def test_supabase_js_auth_and_functions(devcloud: RunningDevcloud):
    node = shutil.which("node")
    assert node is not None, "node is required for the supabase-js interop test"
    assert (JS_DIR / "node_modules" / "@supabase" / "supabase-js").is_dir(), (
        "run `npm ci` in tests/interop/js first"
    )
    process = await asyncio.create_subprocess_exec(
        # node 20 has WebSocket (which supabase-js's realtime wants at construction) behind a flag
        node, "--experimental-websocket", "--input-type=module", "-e", SCRIPT,
        devcloud.url, devcloud.anon_key,
        cwd=JS_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30_000 * MS)
    assert process.returncode == 0, err.decode()
    result = json.loads(out.decode().strip().splitlines()[-1])

    assert result["signUpError"] is None and result["userId"]
    assert result["rotated"] is True and result["email"] == "js@example.com"
    assert result["wrongCode"] == "invalid_credentials"
    assert result["chat"] == "Echo: hi js (turn 1)"
    assert result["stream"].rstrip().endswith("data: [DONE]")
    assert '"content":"stream "' in result["stream"]
    assert result["signOutError"] is None
    # auth-js turns GoTrue's 403 session_not_found into AuthSessionMissingError
    assert result["afterSignOut"] == "AuthSessionMissingError"
