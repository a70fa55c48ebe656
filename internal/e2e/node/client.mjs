// A real XMPP client for push2's end-to-end tests, built on xmpp.js
// (@xmpp/client): XEP-0198 stream management (with resumption), SASL2
// (XEP-0388) and Bind2 (XEP-0386), none of which mellium offers.
//
// The Go tests (internal/e2e) start it as a subprocess:
//
//   node client.mjs '<config as JSON>'
//
// config: service ("xmpp://127.0.0.1:5222"), domain, username, password,
// resource (the Bind2 tag when SASL2 is used), clientId (the SASL2
// <user-agent id=…>, i.e. the registration id on the server), inlinePush (an
// <enable xmlns="urn:xmpp:push2:0"> to inline in the Bind2 request when the
// server offers urn:xmpp:push2:0 there).
//
// It reports on stdout, one JSON object a line:
//   {"event":"online","jid":…}          a new session is bound
//   {"event":"resumed"}                 a hibernated session was resumed (XEP-0198)
//   {"event":"sasl2-resumed"}           ... inline, in SASL2's <success/>
//                                       (mod_sasl2_sm); "resumed" comes too
//   {"event":"sm-enabled","id":…}       stream management is on, resumable
//   {"event":"push2-inline","xml":…}    the server's inline answer in <bound/>
//   {"event":"stanza","xml":…}          every stanza received
//   {"event":"disconnect"}              the TCP connection is gone
//   {"event":"error","message":…}       anything that went wrong
// and takes commands on stdin, one JSON object a line:
//   {"cmd":"send","xml":…}    send a stanza
//   {"cmd":"drop"}            drop TCP without closing the stream (the server
//                             hibernates a resumable session)
//   {"cmd":"reconnect"}       connect again, resuming the session if it can
//   {"cmd":"noack"}/{"cmd":"ack"}  stop/restart answering the server's <r/>
//                             ("ack" also sends an <a/> at once)
//   {"cmd":"stop"}            close the stream cleanly and exit
import { client, xml } from "@xmpp/client";
import parse from "@xmpp/xml/lib/parse.js";
import readline from "node:readline";

const NS_SM = "urn:xmpp:sm:3";
const NS_PUSH2 = "urn:xmpp:push2:0";

const cfg = JSON.parse(process.argv[2] ?? "{}");

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const options = {
  service: cfg.service,
  domain: cfg.domain,
  username: cfg.username,
  password: cfg.password,
  resource: cfg.resource,
};
if (cfg.clientId) {
  options.userAgent = xml(
    "user-agent",
    { id: cfg.clientId },
    xml("software", {}, "push2-e2e"),
  );
}
const xmpp = client(options);

// A client that offers SASL2 says who it is in its stream header (XEP-0388
// and RFC 6120 4.7.1 let it): ejabberd offers SASL2 only to a stream whose
// header carries a from.
if (cfg.clientId) {
  const headerElement = xmpp.headerElement.bind(xmpp);
  xmpp.headerElement = () => {
    const el = headerElement();
    el.attrs.from = `${cfg.username}@${cfg.domain}`;
    return el;
  };
}

// The tests drive reconnections themselves.
xmpp.reconnect.stop();

if (cfg.inlinePush) {
  xmpp.bind2.use(
    NS_PUSH2,
    () => parse(cfg.inlinePush),
    (el) => out({ event: "push2-inline", xml: el.toString() }),
  );
}

// Debian's mod_sasl2 (for Prosody 0.12) sends stream features again right
// after a SASL2 <success/> in which Bind2 already bound a resource, and they
// offer legacy resource binding; xmpp.js would bind again and fail. Those
// features lose their <bind/> (and <session/>), so stream management is
// still enabled from them.
let bound2 = false;
const onElement = xmpp._onElement.bind(xmpp);
xmpp._onElement = (el) => {
  if (el.is("success", "urn:xmpp:sasl:2")) {
    bound2 = !!el.getChild("bound", "urn:xmpp:bind:0");
  } else if (bound2 && el.name === "stream:features") {
    bound2 = false;
    el.children = el.children.filter(
      (c) => typeof c === "string" || !(c.is("bind") || c.is("session")),
    );
  }
  onElement(el);
};

// Acks: "noack" makes the client ignore the server's <r/>, as a client on a
// dead network would.
let acking = true;
const send = xmpp.send.bind(xmpp);
xmpp.send = (el) => {
  if (!acking && el.is && el.is("a", NS_SM)) return Promise.resolve();
  return send(el);
};

xmpp.on("error", (err) => out({ event: "error", message: String(err?.message ?? err) }));
xmpp.on("online", (jid) => out({ event: "online", jid: jid.toString() }));
xmpp.on("disconnect", () => out({ event: "disconnect" }));
xmpp.on("stanza", (el) => out({ event: "stanza", xml: el.toString() }));
xmpp.streamManagement.on("resumed", () => out({ event: "resumed" }));
xmpp.on("nonza", (el) => {
  if (el.is("enabled", NS_SM)) out({ event: "sm-enabled", id: el.attrs.id ?? "" });
  if (el.is("failed", NS_SM)) out({ event: "sm-failed", xml: el.toString() });
  if (el.getNS() === "urn:xmpp:sasl:2" && el.name === "success") {
    // Bind2 (and its inline features) and inline stream management
    // answers come inside SASL2's <success/>.
    const bound = el.getChild("bound", "urn:xmpp:bind:0");
    const sm = bound?.getChild("enabled", NS_SM);
    if (sm) out({ event: "sm-enabled", id: sm.attrs.id ?? "" });
    if (el.getChild("resumed", NS_SM)) out({ event: "sasl2-resumed" });
  }
});

async function handle(cmd) {
  switch (cmd.cmd) {
    case "send":
      await xmpp.send(parse(cmd.xml));
      break;
    case "drop":
      // No </stream:stream>: the TCP connection just goes away.
      xmpp.socket?.destroy();
      break;
    case "reconnect":
      await xmpp.reconnect.reconnect();
      break;
    case "noack":
      acking = false;
      break;
    case "ack":
      // Ack again, starting with what the server asked for meanwhile.
      acking = true;
      await xmpp.send(xml("a", { xmlns: NS_SM, h: xmpp.streamManagement.inbound }));
      break;
    case "stop":
      try {
        await xmpp.stop();
      } finally {
        out({ event: "stopped" });
        process.exit(0);
      }
      break;
    default:
      throw new Error(`unknown command ${JSON.stringify(cmd)}`);
  }
  out({ event: "done", cmd: cmd.cmd });
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    out({ event: "error", message: `bad command: ${err.message}` });
    return;
  }
  handle(cmd).catch((err) => out({ event: "error", message: `${cmd.cmd}: ${err?.message ?? err}` }));
});
// The test is gone: so is this client.
rl.on("close", () => process.exit(0));

xmpp.start().catch((err) => {
  out({ event: "error", message: `start: ${err?.message ?? err}` });
  process.exit(1);
});
