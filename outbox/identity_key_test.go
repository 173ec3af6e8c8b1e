package outbox

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestReadFileKey: a file's key is read without error and is the same
// twice; a missing file is fs.ErrNotExist, which fileGone reports as
// "deleted". Runs on every OS (on Windows the key is the file's presence).
func TestReadFileKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "outbox.db")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	k1, err := readFileKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("xy"), 0o600); err != nil { // a write changes no identity
		t.Fatal(err)
	}
	k2, err := readFileKey(path)
	if err != nil || k1 != k2 {
		t.Fatalf("the key changed with a write: %v %v %v", k1, k2, err)
	}
	if _, err := readFileKey(filepath.Join(dir, "missing.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v, want fs.ErrNotExist", err)
	}
}
