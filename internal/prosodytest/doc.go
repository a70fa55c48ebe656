// Package prosodytest runs a real, private Prosody XMPP server for end-to-end
// tests.
//
// push2 talks to Prosody in two ways: push2d connects to it as an external
// component (XEP-0114), and a Lua bridge module loaded inside Prosody talks
// back to push2d. Fakes of either side would only test our own assumptions
// about Prosody, so the end-to-end tests start the real thing: [Start] (or
// [MustStart] from a test) writes a prosody.cfg.lua into a fresh directory,
// starts the prosody binary of the asked [Version] in the foreground on free
// 127.0.0.1 ports, and waits until it serves XMPP and has logged that it is
// that version. Every server has its own config,
// data directory, pidfile and log, so tests can run in parallel with each
// other and with a system-wide Prosody without sharing any state; nothing
// listens on anything but the loopback interface, s2s is disabled and no TLS
// certificates are needed (c2s allows PLAIN over the unencrypted loopback
// connection).
//
// The generated config enables the modules push2 relies on (roster,
// saslauth, disco, offline, mam, smacks, carbons, ping) and one component,
// [Options.ComponentDomain] with [Options.ComponentSecret], for push2d.
// Community modules from Debian's prosody-modules package (the version's
// [Server.ModulesDir]) and the project's own module directories
// ([Options.PluginPaths]) are on the plugin path, and arbitrary Lua can be
// appended with [Options.ExtraConfig] and [Options.ExtraVHostConfig].
//
// Accounts are created with prosodyctl against the same config and data
// directory ([Server.CreateUser]); [Server.DialClient] and
// [Server.DialComponent] log in with mellium.im/xmpp so tests use a real XMPP
// client library rather than hand-written XML. [Server.Stop], [Server.Kill]
// and [Server.Restart] let tests check what happens when the server goes
// away and comes back on the same ports with the same data.
//
// Two versions are supported ([Versions]): [Prosody13], Prosody 13.0 and the
// 2025 prosody-modules from bookworm-backports, unpacked into a private
// root ([Prosody13Root]), and [Prosody012], Debian 12's system prosody.
// Both are installed by scripts/install-deps.sh, with the other system
// packages. When the asked version is missing, Start returns an error
// (wrapping [ErrNotInstalled]) that says so, and MustStart fails the test:
// the end-to-end tests are never skipped silently.
//
// Started as root without run_as_root, Prosody 0.12.3 logs that it refuses
// to run as root, fails inside its own shutdown and then runs on in a half
// initialised state; prosodyctl, run as root, switches to the "prosody" user,
// which cannot write the test's data directory. The generated config
// therefore sets run_as_root = true, which changes nothing for a normal
// user. See [Options] for the defaults.
package prosodytest
