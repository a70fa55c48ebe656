package host

import (
	"errors"
	"fmt"
)

// wasmImport is one entry of a module's import section.
type wasmImport struct {
	Module, Name string
	Kind         byte // 0 func, 1 table, 2 memory, 3 global, 4 tag
}

func (i wasmImport) String() string { return i.Module + "." + i.Name }

func (i wasmImport) kindName() string {
	switch i.Kind {
	case 0:
		return "function"
	case 1:
		return "table"
	case 2:
		return "memory"
	case 3:
		return "global"
	case 4:
		return "tag"
	}
	return fmt.Sprintf("kind %d", i.Kind)
}

// parseImports reads the import section of a binary module. It checks only
// what it needs to walk the sections; wazero validates the rest at compile
// time. It exists so that the load error can name every import the sandbox
// refuses, whatever its kind (sdk/ABI.md §2), before anything is compiled.
func parseImports(b []byte) ([]wasmImport, error) {
	secs, err := readSections(b)
	if err != nil {
		return nil, err
	}
	for _, s := range secs {
		if s.id != secImport {
			continue
		}
		body := &byteReader{b: s.body}
		n, err := body.u32()
		if err != nil {
			return nil, err
		}
		out := make([]wasmImport, 0, min(int(n), 1024))
		for i := uint32(0); i < n; i++ {
			mod, err := body.name()
			if err != nil {
				return nil, err
			}
			name, err := body.name()
			if err != nil {
				return nil, err
			}
			kind, err := body.byte()
			if err != nil {
				return nil, err
			}
			if err := body.skipImportDesc(kind); err != nil {
				return nil, err
			}
			out = append(out, wasmImport{Module: mod, Name: name, Kind: kind})
		}
		return out, nil
	}
	return nil, nil
}

// section is one section of a binary module; body aliases the module.
type section struct {
	id   byte
	body []byte
}

// readSections splits a binary module into its sections, checking the
// header and that each section fits.
func readSections(b []byte) ([]section, error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return nil, errors.New("not a WebAssembly binary (no \\0asm magic)")
	}
	if b[4] != 1 || b[5] != 0 || b[6] != 0 || b[7] != 0 {
		return nil, errors.New("not a core WebAssembly module of binary version 1 (components are not supported)")
	}
	var secs []section
	r := &byteReader{b: b, off: 8}
	for r.off < len(r.b) {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, err
		}
		if int(size) > len(r.b)-r.off {
			return nil, errors.New("truncated section")
		}
		secs = append(secs, section{id: id, body: r.b[r.off : r.off+int(size)]})
		r.off += int(size)
	}
	return secs, nil
}

type byteReader struct {
	b   []byte
	off int
}

var errTruncated = errors.New("truncated module")

func (r *byteReader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errTruncated
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *byteReader) u32() (uint32, error) {
	var v uint32
	for shift := 0; shift < 35; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, errors.New("malformed LEB128 integer")
}

func (r *byteReader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	if int(n) > len(r.b)-r.off {
		return "", errTruncated
	}
	s := string(r.b[r.off : r.off+int(n)])
	r.off += int(n)
	return s, nil
}

func (r *byteReader) skipLimits() error {
	flags, err := r.byte()
	if err != nil {
		return err
	}
	if _, err := r.u32(); err != nil {
		return err
	}
	if flags&1 != 0 {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}

func (r *byteReader) skipImportDesc(kind byte) error {
	switch kind {
	case 0: // func: type index
		_, err := r.u32()
		return err
	case 1: // table: reftype, limits
		if _, err := r.byte(); err != nil {
			return err
		}
		return r.skipLimits()
	case 2: // memory: limits
		return r.skipLimits()
	case 3: // global: valtype, mutability
		if _, err := r.byte(); err != nil {
			return err
		}
		_, err := r.byte()
		return err
	case 4: // tag: attribute, type index
		if _, err := r.byte(); err != nil {
			return err
		}
		_, err := r.u32()
		return err
	}
	return fmt.Errorf("unknown import kind %d", kind)
}
