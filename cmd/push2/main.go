// Command push2 is the toolbox around the engine: simulate a stanza against
// registrations, and (with the other subcommands) test profiles, make keys
// and decrypt notifications. Every subcommand runs in-process; only probe
// talks to a server (an XMPP client check of a running installation).
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

type command struct {
	name, summary string
	run           func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"simulate", "run a stanza through the pipeline against registrations and print the notifications", runSimulate},
		{"keys", "make a test identity (keys JSON) and an <enable/> for the encrypted send profile", runKeys},
		{"store", "store -dir DIR registrations|outbox|disabled|check [-repair]: inspect (or repair) a stopped push2d's store", runStore},
		{"profile", "profile test [-json] PLUGIN.wasm [CASES_DIR]: run a WebAssembly profile's test cases", runProfile},
		{"probe", "log in as a device and a push service account and check that a push goes through", runProbe},
		{"decrypt", "decrypt an encrypted notification with a keys file and verify its JWT", runDecrypt},
	}
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdin, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "push2: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: push2 COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'push2 COMMAND -h' for a command's flags.")
}
