//go:build linux

package lossyfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Tear is how a cut treats the unsynced changes of one file.
type Tear int

const (
	TearRandom Tear = iota // one of the others, chosen per file and cut
	TearNone               // drop every unsynced change
	TearAll                // apply every unsynced change
	TearPrefix             // apply a prefix, the next change torn
	TearSubset             // apply a random subset of sectors and truncates
)

func (t Tear) String() string {
	switch t {
	case TearRandom:
		return "random"
	case TearNone:
		return "none"
	case TearAll:
		return "all"
	case TearPrefix:
		return "prefix"
	case TearSubset:
		return "subset"
	}
	return fmt.Sprintf("Tear(%d)", int(t))
}

// Options configure an FS. The zero value is usable.
type Options struct {
	// Rand drives the tearing; nil: a random seed.
	Rand *rand.Rand
	// SectorSize is the unit a torn write is made of (default 512).
	SectorSize int
	// Tear fixes the model of every cut (default TearRandom).
	Tear Tear
	// LyingFsync is the probability that an fsync of a file returns
	// success without making anything durable: a broken disk, for the
	// negative controls of the tests. Leave it 0 otherwise.
	LyingFsync float64
	// LyingDirFsync is the same for an fsync of a directory: its entries
	// stay as they were (what a program that never fsyncs its directory
	// gets). Leave it 0 otherwise.
	LyingDirFsync float64
	// Logger gets a line per mount, unmount and cut; nil discards.
	Logger *slog.Logger
}

// CutReport says what one cut did.
type CutReport struct {
	Files          int // files with unsynced changes
	UnsyncedOps    int // unsynced writes and truncates
	UnsyncedBytes  int // bytes in the unsynced writes
	AppliedOps     int // changes applied whole
	TornOps        int // writes applied in part (some sectors, not all)
	DroppedOps     int // changes dropped whole
	PendingRenames int // directories whose namespace differed from the durable one (creates, unlinks, renames not yet fsynced)
	Models         map[Tear]int
}

// Stats are counters over the life of an FS.
type Stats struct {
	Mounts, Cuts              int
	Writes, Fsyncs, DirFsyncs int
	UnsyncedOps, AppliedOps   int
	TornOps, DroppedOps       int
	PendingRenamesLost        int
	FailedAfterCut            int // mutations refused with EIO after a cut
	FailedWrites, FailedReads int // operations refused with EIO by SetFailure
	FailedFsyncs              int // fsyncs refused by Failure.FsyncPath
	LiedFsyncs                int // fsyncs that did nothing (Options.LyingFsync, LyingDirFsync)
}

// FS is the filesystem. Its methods are safe for concurrent use.
type FS struct {
	mu     sync.Mutex
	opts   Options
	log    *slog.Logger
	rnd    *rand.Rand
	root   *object
	gen    uint64 // bumped by Cut: nodes of an older generation are stale
	nextID uint64
	stats  Stats
	server *fuse.Server
	dir    string
	fail   failure // SetFailure
}

// Failure makes the mount answer like a failing disk, without losing
// anything, until SetFailure(Failure{}) clears it: the disk that throws
// EIO for a while (a loose cable, a dying sector, a controller reset).
type Failure struct {
	// Writes: every change (write, truncate, fsync of a file or a
	// directory, create, mkdir, unlink, rename, open with O_TRUNC) fails
	// with EIO.
	Writes bool
	// Errno is what the failing writes answer: 0 is EIO; ENOSPC is a
	// full disk.
	Errno syscall.Errno
	// ReadPath (slash-separated, below the root) names a file whose reads
	// fail with EIO where they overlap one of BadRanges; a read through a
	// mapping of such a range then faults (SIGBUS). The kernel drops a
	// FUSE file's cached pages when the file is opened, so a file opened
	// after SetFailure reads the ranges from here.
	ReadPath  string
	BadRanges []Range
	// FsyncPath (slash-separated, below the root) names a file whose
	// fsyncs fail with Errno once FsyncsAllowed more have succeeded. Its
	// writes still succeed and stay readable, as on Linux after a failed
	// writeback (the page cache keeps the data, the fsync answers EIO):
	// a writer whose last fsync fails is told its commit failed while
	// the file holds it.
	FsyncPath     string
	FsyncsAllowed int
}

// Range is the bytes [From, To) of a file.
type Range struct{ From, To int64 }

type failure struct {
	writes     bool
	errno      syscall.Errno
	readObj    *object
	bad        []Range
	fsyncObj   *object
	fsyncsLeft int
}

// badRead reports whether a read of n bytes at off meets a bad range.
func (fl *failure) badRead(o *object, off int64, n int) bool {
	if fl.readObj != o {
		return false
	}
	for _, r := range fl.bad {
		if off < r.To && off+int64(n) > r.From {
			return true
		}
	}
	return false
}

// SetFailure sets (or, with the zero Failure, clears) the failures of the
// mount. It fails when ReadPath names no file.
func (f *FS) SetFailure(fl Failure) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	nf := failure{writes: fl.Writes, errno: fl.Errno}
	if nf.errno == 0 {
		nf.errno = syscall.EIO
	}
	if fl.ReadPath != "" && len(fl.BadRanges) > 0 {
		o, err := f.lookupFile(fl.ReadPath)
		if err != nil {
			return err
		}
		nf.readObj, nf.bad = o, slices.Clone(fl.BadRanges)
	}
	if fl.FsyncPath != "" {
		o, err := f.lookupFile(fl.FsyncPath)
		if err != nil {
			return err
		}
		nf.fsyncObj, nf.fsyncsLeft = o, fl.FsyncsAllowed
	}
	f.fail = nf
	f.log.Debug("failure set", "writes", fl.Writes, "read_path", fl.ReadPath, "bad_ranges", len(fl.BadRanges), "fsync_path", fl.FsyncPath)
	return nil
}

// lookupFile finds the file at a slash-separated path below the root
// (f.mu held).
func (f *FS) lookupFile(path string) (*object, error) {
	o := f.root
	for _, name := range splitPath(path) {
		if o.dir == nil || o.dir.cur[name] == nil {
			return nil, fmt.Errorf("lossyfs: set failure: no file %s", path)
		}
		o = o.dir.cur[name]
	}
	if o.file == nil {
		return nil, fmt.Errorf("lossyfs: set failure: %s is a directory", path)
	}
	return o, nil
}

type object struct {
	id    uint64
	mode  uint32 // permission bits
	mtime time.Time
	file  *fileData
	dir   *dirData
}

type fileData struct {
	data    []byte // what readers see
	durable []byte // what survives a cut
	log     []change
}

type change struct {
	off   int64
	data  []byte
	trunc bool // a truncate to size off
}

type dirData struct {
	cur, durable map[string]*object
}

// New returns an FS holding an empty root directory.
func New(opts Options) *FS {
	if opts.SectorSize <= 0 {
		opts.SectorSize = 512
	}
	f := &FS{opts: opts, log: opts.Logger, rnd: opts.Rand, nextID: 1}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.rnd == nil {
		f.rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	f.root = f.newObject(0o755, true)
	return f
}

func (f *FS) newObject(mode uint32, dir bool) *object {
	o := &object{id: f.nextID, mode: mode & 0o7777, mtime: time.Now()}
	f.nextID++
	if dir {
		o.dir = &dirData{cur: map[string]*object{}, durable: map[string]*object{}}
	} else {
		o.file = &fileData{}
	}
	return o
}

// Mountable says why FUSE cannot be mounted here, or nil: it needs
// /dev/fuse and root (mounting directly) or a fusermount binary.
func Mountable() error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("no /dev/fuse: %w", err)
	}
	if os.Geteuid() == 0 {
		return nil
	}
	for _, bin := range []string{"fusermount3", "fusermount"} {
		if _, err := exec.LookPath(bin); err == nil {
			return nil
		}
	}
	return errors.New("not root and no fusermount3 in PATH")
}

// ErrMounted is returned by Mount when the FS is mounted already.
var ErrMounted = errors.New("lossyfs is mounted already")

// Mount serves the current state at dir (an existing empty directory). It
// needs /dev/fuse and the right to mount (root, or fusermount).
func (f *FS) Mount(dir string) error {
	f.mu.Lock()
	if f.server != nil {
		f.mu.Unlock()
		return fmt.Errorf("mount lossyfs at %s: %w", dir, ErrMounted)
	}
	root := &node{fsys: f, gen: f.gen, obj: f.root}
	f.mu.Unlock()
	timeout := time.Second
	srv, err := fs.Mount(dir, root, &fs.Options{
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
		MountOptions: fuse.MountOptions{
			DirectMount: true,
			FsName:      "lossyfs",
			Name:        "lossyfs",
			MaxWrite:    1 << 20,
		},
	})
	if err != nil {
		return fmt.Errorf("mount lossyfs at %s: %w", dir, err)
	}
	f.mu.Lock()
	f.server, f.dir = srv, dir
	f.stats.Mounts++
	f.mu.Unlock()
	f.log.Debug("mounted", "dir", dir)
	return nil
}

// Unmount unmounts the FS (retrying for a few seconds while it is busy).
// The state stays: Mount serves it again.
func (f *FS) Unmount() error {
	f.mu.Lock()
	srv, dir := f.server, f.dir
	f.mu.Unlock()
	if srv == nil {
		return nil
	}
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		if err = srv.Unmount(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			// Last resort: detach, so that the test can go on.
			if derr := syscall.Unmount(dir, syscall.MNT_DETACH); derr != nil {
				return fmt.Errorf("unmount lossyfs at %s: %w", dir, err)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Wait()
	f.mu.Lock()
	f.server = nil
	f.mu.Unlock()
	f.log.Debug("unmounted", "dir", dir)
	return err
}

// Stats returns the counters.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// ReadFile returns the current content of the file at the slash-separated
// path below the root, as readers of the mount see it.
func (f *FS) ReadFile(path string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.root
	for _, name := range splitPath(path) {
		if o.dir == nil {
			return nil, fmt.Errorf("read %s: %w", path, syscall.ENOTDIR)
		}
		c, ok := o.dir.cur[name]
		if !ok {
			return nil, fmt.Errorf("read %s: %w", path, syscall.ENOENT)
		}
		o = c
	}
	if o.file == nil {
		return nil, fmt.Errorf("read %s: %w", path, syscall.EISDIR)
	}
	return slices.Clone(o.file.data), nil
}

// Names returns the current names in the directory at path ("" is the
// root), sorted.
func (f *FS) Names(path string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.root
	for _, name := range splitPath(path) {
		c, ok := o.dir.cur[name]
		if !ok || c.dir == nil {
			return nil, fmt.Errorf("list %s: %w", path, syscall.ENOENT)
		}
		o = c
	}
	return sortedNames(o.dir.cur), nil
}

func splitPath(p string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			if i > start {
				out = append(out, p[start:i])
			}
			start = i + 1
		}
	}
	return out
}

func sortedNames(m map[string]*object) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Cut simulates a power cut at this instant: the state that survives
// replaces the current one, and every change through the mounted
// filesystem fails with EIO from now on. Kill the processes that use the
// mount, then Unmount and Mount to go on with the survivors.
func (f *FS) Cut() CutReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	rep := CutReport{Models: map[Tear]int{}}
	f.gen++
	f.root = f.cutObject(f.root, map[*object]*object{}, &rep)
	f.stats.Cuts++
	f.stats.UnsyncedOps += rep.UnsyncedOps
	f.stats.AppliedOps += rep.AppliedOps
	f.stats.TornOps += rep.TornOps
	f.stats.DroppedOps += rep.DroppedOps
	f.stats.PendingRenamesLost += rep.PendingRenames
	f.log.Debug("power cut", "files", rep.Files, "unsynced_ops", rep.UnsyncedOps,
		"applied", rep.AppliedOps, "torn", rep.TornOps, "dropped", rep.DroppedOps)
	return rep
}

func (f *FS) cutObject(o *object, memo map[*object]*object, rep *CutReport) *object {
	if n, ok := memo[o]; ok {
		return n
	}
	n := &object{id: o.id, mode: o.mode, mtime: o.mtime}
	memo[o] = n
	if o.dir != nil {
		n.dir = &dirData{cur: map[string]*object{}, durable: map[string]*object{}}
		if !sameNames(o.dir.cur, o.dir.durable) {
			rep.PendingRenames++
		}
		for _, name := range sortedNames(o.dir.durable) {
			c := f.cutObject(o.dir.durable[name], memo, rep)
			n.dir.cur[name], n.dir.durable[name] = c, c
		}
		return n
	}
	data := f.tear(o.file, rep)
	n.file = &fileData{data: data, durable: slices.Clone(data)}
	return n
}

func sameNames(a, b map[string]*object) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// tear returns the content of fd that survives a cut.
func (f *FS) tear(fd *fileData, rep *CutReport) []byte {
	buf := slices.Clone(fd.durable)
	if len(fd.log) == 0 {
		return buf
	}
	rep.Files++
	rep.UnsyncedOps += len(fd.log)
	for _, c := range fd.log {
		rep.UnsyncedBytes += len(c.data)
	}
	model := f.opts.Tear
	if model == TearRandom {
		model = Tear(1 + f.rnd.IntN(4))
	}
	rep.Models[model]++
	switch model {
	case TearNone:
		rep.DroppedOps += len(fd.log)
	case TearAll:
		for _, c := range fd.log {
			buf = apply(buf, c)
		}
		rep.AppliedOps += len(fd.log)
	case TearPrefix:
		k := f.rnd.IntN(len(fd.log) + 1)
		for _, c := range fd.log[:k] {
			buf = apply(buf, c)
		}
		rep.AppliedOps += k
		if k < len(fd.log) {
			var applied, all int
			buf, applied, all = f.applySectors(buf, fd.log[k], 0.5)
			countPartial(rep, applied, all)
			rep.DroppedOps += len(fd.log) - k - 1
		}
	case TearSubset:
		for _, c := range fd.log {
			if c.trunc {
				if f.rnd.IntN(2) == 0 {
					buf = apply(buf, c)
					rep.AppliedOps++
				} else {
					rep.DroppedOps++
				}
				continue
			}
			var applied, all int
			buf, applied, all = f.applySectors(buf, c, 0.5)
			countPartial(rep, applied, all)
		}
	}
	return buf
}

func countPartial(rep *CutReport, applied, all int) {
	switch {
	case applied == 0:
		rep.DroppedOps++
	case applied == all:
		rep.AppliedOps++
	default:
		rep.TornOps++
	}
}

// applySectors applies each sector-aligned piece of c with probability p
// and says how many of how many pieces it applied. A truncate is one piece.
func (f *FS) applySectors(buf []byte, c change, p float64) ([]byte, int, int) {
	if c.trunc {
		if f.rnd.Float64() < p {
			return apply(buf, c), 1, 1
		}
		return buf, 0, 1
	}
	ss := int64(f.opts.SectorSize)
	applied, all := 0, 0
	for pos := int64(0); pos < int64(len(c.data)); {
		end := (c.off+pos)/ss*ss + ss - c.off // next sector boundary, relative
		if end > int64(len(c.data)) {
			end = int64(len(c.data))
		}
		all++
		if f.rnd.Float64() < p {
			buf = apply(buf, change{off: c.off + pos, data: c.data[pos:end]})
			applied++
		}
		pos = end
	}
	return buf, applied, all
}

func apply(buf []byte, c change) []byte {
	if c.trunc {
		return resize(buf, c.off)
	}
	end := c.off + int64(len(c.data))
	if end > int64(len(buf)) {
		buf = resize(buf, end)
	}
	copy(buf[c.off:], c.data)
	return buf
}

func resize(buf []byte, size int64) []byte {
	if size <= int64(len(buf)) {
		return buf[:size:size]
	}
	return append(buf, make([]byte, size-int64(len(buf)))...)
}

// node is the FUSE face of an object, for one mount generation.
type node struct {
	fs.Inode
	fsys *FS
	gen  uint64
	obj  *object
}

var (
	_ fs.NodeGetattrer = (*node)(nil)
	_ fs.NodeSetattrer = (*node)(nil)
	_ fs.NodeLookuper  = (*node)(nil)
	_ fs.NodeReaddirer = (*node)(nil)
	_ fs.NodeCreater   = (*node)(nil)
	_ fs.NodeMkdirer   = (*node)(nil)
	_ fs.NodeUnlinker  = (*node)(nil)
	_ fs.NodeRmdirer   = (*node)(nil)
	_ fs.NodeRenamer   = (*node)(nil)
	_ fs.NodeOpener    = (*node)(nil)
	_ fs.NodeReader    = (*node)(nil)
	_ fs.NodeWriter    = (*node)(nil)
	_ fs.NodeFsyncer   = (*node)(nil)
	_ fs.NodeFlusher   = (*node)(nil)
	_ fs.NodeStatfser  = (*node)(nil)
)

// failErrno is the errno of a change that stale refused: EIO, or the
// errno of SetFailure.
func (n *node) failErrno() syscall.Errno {
	if n.gen == n.fsys.gen && n.fsys.fail.writes {
		return n.fsys.fail.errno
	}
	return syscall.EIO
}

// stale reports (with the lock held) whether a change through n must fail.
func (n *node) stale() bool {
	if n.gen != n.fsys.gen {
		n.fsys.stats.FailedAfterCut++
		return true
	}
	if n.fsys.fail.writes {
		n.fsys.stats.FailedWrites++
		return true
	}
	return false
}

func (n *node) child(ctx context.Context, o *object) *fs.Inode {
	mode := uint32(syscall.S_IFREG)
	if o.dir != nil {
		mode = syscall.S_IFDIR
	}
	return n.NewInode(ctx, &node{fsys: n.fsys, gen: n.gen, obj: o}, fs.StableAttr{Mode: mode, Ino: o.id})
}

func fillAttr(o *object, a *fuse.Attr) {
	a.Ino = o.id
	a.Nlink = 1
	if o.dir != nil {
		a.Mode = syscall.S_IFDIR | o.mode
		a.Nlink = 2
		a.Size = 4096
	} else {
		a.Mode = syscall.S_IFREG | o.mode
		a.Size = uint64(len(o.file.data))
	}
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = 4096
	a.SetTimes(&o.mtime, &o.mtime, &o.mtime)
}

func (n *node) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	fillAttr(n.obj, &out.Attr)
	return 0
}

func (n *node) Setattr(ctx context.Context, _ fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	if n.stale() {
		return syscall.EIO
	}
	o := n.obj
	if m, ok := in.GetMode(); ok {
		o.mode = m & 0o7777
	}
	if sz, ok := in.GetSize(); ok {
		if o.file == nil {
			return syscall.EISDIR
		}
		n.truncate(int64(sz))
	}
	if t, ok := in.GetMTime(); ok {
		o.mtime = t
	}
	fillAttr(o, &out.Attr)
	return 0
}

// truncate records a size change (lock held).
func (n *node) truncate(size int64) {
	fd := n.obj.file
	c := change{off: size, trunc: true}
	fd.log = append(fd.log, c)
	fd.data = apply(fd.data, c)
	n.obj.mtime = time.Now()
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	if n.obj.dir == nil {
		return nil, syscall.ENOTDIR
	}
	o, ok := n.obj.dir.cur[name]
	if !ok {
		return nil, syscall.ENOENT
	}
	fillAttr(o, &out.Attr)
	return n.child(ctx, o), 0
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	if n.obj.dir == nil {
		return nil, syscall.ENOTDIR
	}
	var entries []fuse.DirEntry
	for _, name := range sortedNames(n.obj.dir.cur) {
		o := n.obj.dir.cur[name]
		mode := uint32(syscall.S_IFREG)
		if o.dir != nil {
			mode = syscall.S_IFDIR
		}
		entries = append(entries, fuse.DirEntry{Name: name, Mode: mode, Ino: o.id})
	}
	return fs.NewListDirStream(entries), 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	if n.stale() {
		return nil, nil, 0, syscall.EIO
	}
	d := n.obj.dir
	if o, ok := d.cur[name]; ok {
		if flags&syscall.O_EXCL != 0 {
			return nil, nil, 0, syscall.EEXIST
		}
		if o.dir != nil {
			return nil, nil, 0, syscall.EISDIR
		}
		if flags&syscall.O_TRUNC != 0 {
			(&node{fsys: n.fsys, gen: n.gen, obj: o}).truncate(0)
		}
		fillAttr(o, &out.Attr)
		return n.child(ctx, o), nil, 0, 0
	}
	o := n.fsys.newObject(mode, false)
	d.cur[name] = o // durable when the directory is fsynced
	fillAttr(o, &out.Attr)
	return n.child(ctx, o), nil, 0, 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	if n.stale() {
		return nil, syscall.EIO
	}
	d := n.obj.dir
	if _, ok := d.cur[name]; ok {
		return nil, syscall.EEXIST
	}
	o := n.fsys.newObject(mode, true)
	d.cur[name] = o // durable when the directory is fsynced
	fillAttr(o, &out.Attr)
	return n.child(ctx, o), 0
}

func (n *node) remove(name string, dir bool) syscall.Errno {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	if n.stale() {
		return syscall.EIO
	}
	d := n.obj.dir
	o, ok := d.cur[name]
	switch {
	case !ok:
		return syscall.ENOENT
	case dir && o.dir == nil:
		return syscall.ENOTDIR
	case !dir && o.dir != nil:
		return syscall.EISDIR
	case dir && len(o.dir.cur) > 0:
		return syscall.ENOTEMPTY
	}
	delete(d.cur, name) // durable when the directory is fsynced
	return 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno { return n.remove(name, false) }
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno  { return n.remove(name, true) }

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	if n.stale() || np.gen != n.fsys.gen {
		return syscall.EIO
	}
	if flags&^uint32(1) != 0 { // only RENAME_NOREPLACE
		return syscall.EINVAL
	}
	src, dst := n.obj.dir, np.obj.dir
	o, ok := src.cur[name]
	if !ok {
		return syscall.ENOENT
	}
	if old, ok := dst.cur[newName]; ok {
		if old == o {
			return 0
		}
		if flags&1 != 0 {
			return syscall.EEXIST
		}
		switch {
		case old.dir != nil && o.dir == nil:
			return syscall.EISDIR
		case old.dir == nil && o.dir != nil:
			return syscall.ENOTDIR
		case old.dir != nil && len(old.dir.cur) > 0:
			return syscall.ENOTEMPTY
		}
	}
	// Durable only when the directories are fsynced.
	delete(src.cur, name)
	dst.cur[newName] = o
	return 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_TRUNC != 0 {
		n.fsys.mu.Lock()
		defer n.fsys.mu.Unlock()
		if n.stale() {
			return nil, 0, syscall.EIO
		}
		if n.obj.file != nil && len(n.obj.file.data) > 0 {
			n.truncate(0)
		}
	}
	return nil, 0, 0
}

func (n *node) Read(ctx context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	if n.obj.file == nil {
		return nil, syscall.EISDIR
	}
	if n.fsys.fail.badRead(n.obj, off, len(dest)) {
		n.fsys.stats.FailedReads++
		return nil, syscall.EIO
	}
	data := n.obj.file.data
	if off >= int64(len(data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), int64(len(data)))
	k := copy(dest, data[off:end])
	return fuse.ReadResultData(dest[:k]), 0
}

func (n *node) Write(ctx context.Context, _ fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	if n.stale() {
		return 0, n.failErrno()
	}
	fd := n.obj.file
	if fd == nil {
		return 0, syscall.EISDIR
	}
	c := change{off: off, data: slices.Clone(data)}
	fd.log = append(fd.log, c)
	fd.data = apply(fd.data, c)
	n.obj.mtime = time.Now()
	n.fsys.stats.Writes++
	return uint32(len(data)), 0
}

// Fsync makes a file's content, or a directory's namespace, durable.
func (n *node) Fsync(ctx context.Context, _ fs.FileHandle, flags uint32) syscall.Errno {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	if n.stale() {
		return n.failErrno()
	}
	if d := n.obj.dir; d != nil {
		if n.fsys.opts.LyingDirFsync > 0 && n.fsys.rnd.Float64() < n.fsys.opts.LyingDirFsync {
			n.fsys.stats.LiedFsyncs++
			return 0
		}
		d.durable = make(map[string]*object, len(d.cur))
		for k, v := range d.cur {
			d.durable[k] = v
		}
		n.fsys.stats.DirFsyncs++
		return 0
	}
	if fl := &n.fsys.fail; fl.fsyncObj != nil && fl.fsyncObj == n.obj {
		if fl.fsyncsLeft <= 0 {
			n.fsys.stats.FailedFsyncs++
			return fl.errno
		}
		fl.fsyncsLeft--
	}
	if n.fsys.opts.LyingFsync > 0 && n.fsys.rnd.Float64() < n.fsys.opts.LyingFsync {
		n.fsys.stats.LiedFsyncs++
		return 0
	}
	fd := n.obj.file
	for _, c := range fd.log {
		fd.durable = apply(fd.durable, c)
	}
	fd.log = nil
	n.fsys.stats.Fsyncs++
	return 0
}

func (n *node) Flush(ctx context.Context, _ fs.FileHandle) syscall.Errno { return 0 }

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	const blocks = 1 << 20 // 4 GiB of 4 KiB blocks, always free
	out.Bsize, out.Frsize = 4096, 4096
	out.Blocks, out.Bfree, out.Bavail = blocks, blocks, blocks
	out.Files, out.Ffree = 1<<20, 1<<20
	out.NameLen = 255
	return 0
}
