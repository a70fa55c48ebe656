package pebblestore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/vfs"
)

// The store holds the registrations' secrets in clear (Web Push auth
// secrets, JWT signing keys, client tokens), so it is private to the user
// push2d runs as, whatever the umask: the directory 0700, every file 0600.
const (
	dirMode  fs.FileMode = 0o700
	fileMode fs.FileMode = 0o600
)

// ErrExposed is wrapped by the error Open and OpenReadOnly return for a
// store that users other than its owner can read or enter.
var ErrExposed = errors.New("store readable by other users")

// prepareDir creates dir (0700) if it does not exist and refuses one that
// other users can read, write or enter, or that holds such a file. An empty
// directory (a new store, say created by the service manager) holds nothing
// yet and is made private instead. The store is flat (Pebble keeps every
// file in dir), so one level is checked.
func prepareDir(dir string, create bool) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist) && create:
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return err
		}
		// MkdirAll applies the umask; a umask such as 0277 would leave
		// the owner without access, so set the mode exactly.
		return os.Chmod(dir, dirMode)
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(entries) == 0 && create {
		return os.Chmod(dir, dirMode)
	}
	exposed := fi.Mode().Perm()&0o077 != 0
	for _, e := range entries {
		if exposed {
			break
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		exposed = info.Mode().Perm()&0o077 != 0
	}
	if exposed {
		return fmt.Errorf("%w: %s holds the registrations' keys; make it private with: chmod -R go-rwx %s", ErrExposed, dir, dir)
	}
	return nil
}

// privateFS is Pebble's file system with every file it creates (WAL,
// SSTables, MANIFEST, OPTIONS, LOCK, temporary files) and every directory
// set to owner-only permissions right after creation. The window in which a
// new file has the umask's mode does not expose it: the directory itself is
// 0700, so no other user can reach it.
type privateFS struct{ vfs.FS }

func (p privateFS) Create(name string) (vfs.File, error) {
	f, err := p.FS.Create(name)
	return restrict(f, err, name)
}

func (p privateFS) OpenReadWrite(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := p.FS.OpenReadWrite(name, opts...)
	return restrict(f, err, name)
}

func (p privateFS) ReuseForWrite(oldname, newname string) (vfs.File, error) {
	f, err := p.FS.ReuseForWrite(oldname, newname)
	return restrict(f, err, newname)
}

func (p privateFS) Lock(name string) (io.Closer, error) {
	c, err := p.FS.Lock(name)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(name, fileMode); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (p privateFS) MkdirAll(dir string, _ os.FileMode) error {
	if err := p.FS.MkdirAll(dir, dirMode); err != nil {
		return err
	}
	return os.Chmod(filepath.Clean(dir), dirMode)
}

// restrict sets a file just created or opened for writing to fileMode,
// closing it if that fails.
func restrict(f vfs.File, err error, name string) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(name, fileMode); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
