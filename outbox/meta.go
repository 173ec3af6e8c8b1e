package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// The start of bbolt's file format (version 2), read by precheckMeta
// before bbolt opens a file. Each of the first two pages holds a meta:
// after a 16-byte page header, magic u32, version u32, page size u32,
// flags u32, root bucket (pgid u64, sequence u64), freelist pgid u64,
// high-water pgid u64, txid u64 and an FNV-64a checksum of the preceding
// 56 bytes. Byte order is the machine's; every target of the agent is
// little-endian.
const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	boltPageHeader  = 16
	boltMetaSize    = 64
	boltNoFreelist  = ^uint64(0)
	boltMaxPageSize = 1 << 16

	boltBranchPage   = 0x01
	boltLeafPage     = 0x02
	boltFreelistPage = 0x10
)

type boltMeta struct {
	pageSize             uint32
	root, freelist, pgid uint64
	txid                 uint64
}

func parseMeta(b []byte) (boltMeta, bool) {
	if len(b) < boltPageHeader+boltMetaSize {
		return boltMeta{}, false
	}
	m := b[boltPageHeader : boltPageHeader+boltMetaSize]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	_, _ = h.Write(m[:56])
	if h.Sum64() != le.Uint64(m[56:]) {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: le.Uint32(m[8:]), root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]),
		pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}

// precheckMeta reads the meta pages of an existing file and fails with a
// corruptError when bbolt could not use the file: no valid meta page, or
// the meta bbolt would use points past the end of the file (truncated)
// or at pages it does not have. A read that fails is an I/O error, not
// corruption.
func precheckMeta(path string) (boltMeta, error) {
	corrupt := func(format string, a ...any) error {
		return &corruptError{fmt.Errorf("open outbox %s: %w: %s", path, errCorruptRecord, fmt.Sprintf(format, a...))}
	}
	f, err := os.Open(path)
	if err != nil {
		return boltMeta{}, fmt.Errorf("open outbox %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return boltMeta{}, fmt.Errorf("open outbox %s: %w", path, err)
	}
	read := func(off int64) ([]byte, error) {
		b := make([]byte, boltPageHeader+boltMetaSize)
		n, err := f.ReadAt(b, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("open outbox %s: read meta page: %w", path, err)
		}
		return b[:n], nil
	}
	b0, err := read(0)
	if err != nil {
		return boltMeta{}, err
	}
	m0, ok0 := parseMeta(b0)
	sizes := []uint32{4096, 8192, 16384, 32768, 65536}
	if ok0 {
		sizes = []uint32{m0.pageSize}
	}
	var m1 boltMeta
	ok1 := false
	for _, ps := range sizes {
		b1, err := read(int64(ps))
		if err != nil {
			return boltMeta{}, err
		}
		if m1, ok1 = parseMeta(b1); ok1 {
			break
		}
	}
	m := m0
	switch {
	case ok0 && ok1:
		if m1.txid > m0.txid {
			m = m1
		}
	case ok1:
		m = m1
	case !ok0:
		return boltMeta{}, corrupt("no valid meta page")
	}
	if m.pageSize < 512 || m.pageSize > boltMaxPageSize || m.pageSize&(m.pageSize-1) != 0 {
		return boltMeta{}, corrupt("page size %d", m.pageSize)
	}
	if m.pgid < 2 || m.pgid > uint64(fi.Size())/uint64(m.pageSize) {
		return boltMeta{}, corrupt("file has %d bytes but its pages reach %d×%d (truncated)", fi.Size(), m.pgid, m.pageSize)
	}
	if m.root >= m.pgid || (m.freelist != boltNoFreelist && m.freelist >= m.pgid) {
		return boltMeta{}, corrupt("meta points past the last page")
	}
	// The pages the meta names must be of their kind: bbolt panics on a
	// freelist page that is not one.
	flags := func(pgid uint64) (uint16, error) {
		var h [boltPageHeader]byte
		if _, err := f.ReadAt(h[:], int64(pgid)*int64(m.pageSize)); err != nil {
			return 0, fmt.Errorf("open outbox %s: read page %d: %w", path, pgid, err)
		}
		return binary.LittleEndian.Uint16(h[8:]), nil
	}
	fl, err := flags(m.root)
	if err != nil {
		return boltMeta{}, err
	}
	if fl != boltBranchPage && fl != boltLeafPage {
		return boltMeta{}, corrupt("root page %d has type %#x", m.root, fl)
	}
	// The agent always stores the freelist. Without one, bbolt rebuilds
	// it (at a read-write open, or a check) by walking every page on a
	// goroutine of its own, where a damaged page is a panic that nothing
	// can recover: the process dies, and a service manager restarts it
	// into the same crash. Such a file is not opened.
	if m.freelist == boltNoFreelist {
		return boltMeta{}, corrupt("no stored freelist (not written by this agent)")
	}
	if fl, err = flags(m.freelist); err != nil {
		return boltMeta{}, err
	}
	if fl != boltFreelistPage {
		return boltMeta{}, corrupt("freelist page %d has type %#x", m.freelist, fl)
	}
	return m, nil
}
