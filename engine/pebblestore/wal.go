package pebblestore

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble"
)

// Pebble's write-ahead log format (package pebble/record): 32 KiB blocks of
// chunks, each with a header of checksum (4 bytes, masked CRC-32C of the
// bytes from the type on), length (2), type (1) and, for the recyclable
// types Pebble writes, the log number (4). A record is a full chunk or a
// first, middle…, last sequence; a record is one committed batch.
//
// Pebble replays the last WAL up to the first chunk it cannot read and
// treats the rest as the unused tail of a preallocated or recycled file.
// That is right after a crash (the write that was interrupted was never
// acknowledged), but it also hides damage: every batch past a damaged chunk
// is dropped without a word. scanWAL reads a log as Pebble would and then
// looks past where Pebble stops for chunks of the same log: a valid chunk of
// this log after the stop can only mean that committed data lies beyond the
// damage.
const (
	walBlockSize      = 32 << 10
	walLegacyHeader   = 7
	walRecycledHeader = 11
	walFull           = 1
	walFirst          = 2
	walMiddle         = 3
	walLast           = 4
	walRecycledFull   = 5
	walRecycledLast   = 8
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func maskedCRC(b []byte) uint32 {
	c := crc32.Update(0, crcTable, b)
	return (c>>15 | c<<17) + 0xa282ead8
}

// walScan is what scanWAL found in one log file.
type walScan struct {
	name    string
	size    int64
	records int   // readable records, those Pebble replays
	stop    int64 // offset where reading stopped: the end of the last readable record
	// clean: reading stopped at the end of the file or at an end-of-log
	// marker (a chunk of another log: Pebble's EOF trailer or an older
	// log's content in a recycled file), not at an unreadable chunk.
	clean bool
	// beyond holds the records of this log found past an unreadable chunk:
	// committed batches Pebble would drop. beyondChunks counts the valid
	// chunks found there (a record may have lost its first chunk).
	beyond       [][]byte
	beyondChunks int
}

// damaged reports whether committed data of this log lies past where
// Pebble stops reading it.
func (w walScan) damaged() bool { return w.beyondChunks > 0 }

// logFiles lists the WAL files of a store directory, oldest first.
func logFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if _, ok := logNumber(e.Name()); ok && e.Type().IsRegular() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out) // fixed-width numbers
	return out, nil
}

func logNumber(name string) (uint32, bool) {
	num, ok := strings.CutSuffix(name, ".log")
	if !ok || len(num) < 6 {
		return 0, false
	}
	n, err := strconv.ParseUint(num, 10, 32)
	return uint32(n), err == nil
}

// scanWAL reads the log file dir/name.
func scanWAL(dir, name string) (walScan, error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return walScan{}, err
	}
	num, _ := logNumber(name)
	w := walScan{name: name, size: int64(len(data))}
	var recs [][]byte
	end, clean := readChunks(data, 0, num, &recs, nil)
	w.records, w.stop, w.clean = len(recs), end, clean
	// Past the stop: any valid chunk of this log is data Pebble drops.
	for p := end + 1; p+walRecycledHeader <= int64(len(data)); p++ {
		if !validChunkAt(data, p, num) {
			continue
		}
		var lost [][]byte
		chunks := 0
		next, _ := readChunks(data, p, num, &lost, &chunks)
		w.beyond = append(w.beyond, lost...)
		w.beyondChunks += max(chunks, 1)
		p = max(next, p+1) - 1
	}
	return w, nil
}

// validChunkAt reports whether a recyclable chunk of log num with a right
// checksum starts at p.
func validChunkAt(data []byte, p int64, num uint32) bool {
	inBlock := p % walBlockSize
	if inBlock+walRecycledHeader > walBlockSize {
		return false
	}
	h := data[p:]
	typ := h[6]
	if typ < walRecycledFull || typ > walRecycledLast || binary.LittleEndian.Uint32(h[7:11]) != num {
		return false
	}
	n := int64(binary.LittleEndian.Uint16(h[4:6]))
	e := p + walRecycledHeader + n
	if inBlock+walRecycledHeader+n > walBlockSize || e > int64(len(data)) {
		return false
	}
	return binary.LittleEndian.Uint32(h[0:4]) == maskedCRC(data[p+6:e])
}

// readChunks reads the records of log num from offset p as Pebble's reader
// does, appending complete ones to recs, and returns the offset after the
// last complete record and whether reading ended cleanly (end of file or
// another log's chunk at a record boundary). chunks, if not nil, counts the
// valid chunks read. A record whose first chunk is missing (reading starts
// within it) is skipped, as Pebble skips it.
func readChunks(data []byte, p int64, num uint32, recs *[][]byte, chunks *int) (int64, bool) {
	var rec []byte
	inRecord := false
	end := p
	size := int64(len(data))
	for {
		inBlock := p % walBlockSize
		if inBlock+walRecycledHeader > walBlockSize {
			// Pebble's writer starts no chunk in the last bytes of a
			// block: they are zero padding.
			p += walBlockSize - inBlock
			continue
		}
		if p >= size {
			return end, !inRecord
		}
		if p+walLegacyHeader > size {
			return end, false
		}
		h := data[p:]
		sum := binary.LittleEndian.Uint32(h[0:4])
		n := int64(binary.LittleEndian.Uint16(h[4:6]))
		typ := h[6]
		if sum == 0 && n == 0 && typ == 0 {
			return end, false // zeroed: preallocated, or wiped
		}
		header := int64(walLegacyHeader)
		if typ >= walRecycledFull && typ <= walRecycledLast {
			header = walRecycledHeader
			if p+header > size {
				return end, false
			}
			if binary.LittleEndian.Uint32(h[7:11]) != num {
				return end, !inRecord // the end-of-log trailer, or an older log
			}
			typ -= walRecycledFull - walFull
		} else if typ < walFull || typ > walLast {
			return end, false
		}
		e := p + header + n
		if inBlock+header+n > walBlockSize || e > size || sum != maskedCRC(data[p+6:e]) {
			return end, false
		}
		if chunks != nil {
			*chunks++
		}
		payload := data[p+header : e]
		p = e
		switch typ {
		case walFull:
			*recs = append(*recs, payload)
			inRecord, end = false, p
		case walFirst:
			rec, inRecord = append([]byte(nil), payload...), true
		case walMiddle, walLast:
			if !inRecord {
				end = p // the tail of a record whose start is elsewhere
				continue
			}
			rec = append(rec, payload...)
			if typ == walLast {
				*recs = append(*recs, rec)
				inRecord, end = false, p
			}
		}
	}
}

// countBatch adds the keys a WAL record (one batch) sets to c, by kind of
// record (deletions are not counted: they lose nothing).
func countBatch(repr []byte, c *Counts) {
	r, _ := pebble.ReadBatch(repr)
	for {
		kind, k, _, ok, err := r.Next()
		if !ok || err != nil {
			return
		}
		if kind == pebble.InternalKeyKindSet {
			c.add(k, 1)
		}
	}
}
