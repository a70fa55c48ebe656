package prosodytest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// Version names a Prosody release line the tests run against. Both come
// from Debian packages installed by scripts/install-deps.sh, and both can be
// on one machine at once:
//
//   - [Prosody012] is Debian 12's prosody 0.12 with its prosody-modules
//     (2023), installed as the system's prosody (/usr/bin/prosody,
//     modules in /usr/lib/prosody/modules).
//   - [Prosody13] is Prosody 13.0 and the 2025 prosody-modules from
//     bookworm-backports, unpacked (not installed) into a private root,
//     [Prosody13Root], so the system install stays 0.12.
type Version string

const (
	// Prosody012 is Debian 12's system prosody (0.12.x). It is what the
	// zero Version means.
	Prosody012 Version = "0.12"
	// Prosody13 is Prosody 13.0.x from bookworm-backports, in
	// Prosody13Root().
	Prosody13 Version = "13"
)

// Versions is every Prosody release line the tests support, newest first.
// End-to-end tests run case for case on each.
var Versions = []Version{Prosody13, Prosody012}

// Name is the version as a test name component: "prosody13",
// "prosody012".
func (v Version) Name() string {
	return "prosody" + strings.ReplaceAll(string(v.orDefault()), ".", "")
}

func (v Version) String() string { return "Prosody " + string(v.orDefault()) }

func (v Version) orDefault() Version {
	if v == "" {
		return Prosody012
	}
	return v
}

// ParseVersion accepts a Version ("13", "0.12") or its Name
// ("prosody13", "prosody012").
func ParseVersion(s string) (Version, error) {
	for _, v := range Versions {
		if s == string(v) || s == v.Name() {
			return v, nil
		}
	}
	return "", fmt.Errorf("unknown Prosody version %q (supported: 13, 0.12)", s)
}

// DefaultProsody13Root is where scripts/install-deps.sh unpacks Prosody 13
// unless PUSH2_PROSODY13_ROOT says otherwise.
const DefaultProsody13Root = "/opt/push2/prosody13"

// Prosody13Root is the private root Prosody 13 is unpacked into:
// $PUSH2_PROSODY13_ROOT, or DefaultProsody13Root.
func Prosody13Root() string {
	if r := os.Getenv("PUSH2_PROSODY13_ROOT"); r != "" {
		return r
	}
	return DefaultProsody13Root
}

// install is where one version's programs and modules are.
type install struct {
	prosody, prosodyctl string
	modulesDir          string // Prosody's own modules and prosody-modules
}

// locate finds v's programs. For 0.12 they are looked up on PATH (Debian's
// /usr/bin), for 13 in Prosody13Root.
func (v Version) locate() (install, error) {
	switch v.orDefault() {
	case Prosody012:
		var in install
		var err error
		if in.prosody, err = exec.LookPath("prosody"); err != nil {
			return install{}, fmt.Errorf("%w (%v)", ErrNotInstalled, err)
		}
		if in.prosodyctl, err = exec.LookPath("prosodyctl"); err != nil {
			return install{}, fmt.Errorf("%w (%v)", ErrNotInstalled, err)
		}
		in.modulesDir = SystemModulesDir
		return in, nil
	case Prosody13:
		root := Prosody13Root()
		in := install{
			prosody:    filepath.Join(root, "usr", "bin", "prosody"),
			prosodyctl: filepath.Join(root, "usr", "bin", "prosodyctl"),
			modulesDir: filepath.Join(root, "usr", "lib", "prosody", "modules"),
		}
		for _, p := range []string{in.prosody, in.prosodyctl} {
			if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				return install{}, fmt.Errorf("%w (Prosody 13: no executable %s; scripts/install-deps.sh unpacks it into %s)", ErrNotInstalled, p, root)
			}
		}
		return in, nil
	}
	return install{}, fmt.Errorf("unknown Prosody version %q (supported: 13, 0.12)", string(v))
}

// reHello is Prosody's first log line, naming the version that runs.
var reHello = regexp.MustCompile(`Hello and welcome to Prosody version (\S+)`)

// matches reports whether a running server's version string (as logged,
// e.g. "0.12.3", "13.0.1") belongs to release line v.
func (v Version) matches(running string) bool {
	return strings.HasPrefix(running, string(v.orDefault())+".")
}
