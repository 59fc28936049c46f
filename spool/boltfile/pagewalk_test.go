package boltfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/boltsurgeon"
)

// boltFile writes a bbolt file whose bucket "b" holds the 8-byte
// big-endian keys 1..n (value: the key again), beside a small bucket
// "small" inline in its parent's leaf.
func boltFile(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 4096, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		for i := uint64(1); i <= uint64(n); i++ {
			k := binary.BigEndian.AppendUint64(nil, i)
			if err := b.Put(k, bytes.Repeat(k, 4)); err != nil {
				return err
			}
		}
		small, err := tx.CreateBucket([]byte("small"))
		if err != nil {
			return err
		}
		return small.Put([]byte("k"), []byte("v"))
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// inTime runs fn, failing the test if it loops (a walk that follows the
// cycle never returns).
func inTime(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the walk did not end: it follows the page cycle")
	}
}

func TestCheckPagesIntactAndCyclic(t *testing.T) {
	path := boltFile(t, 1000)
	if err := CheckPages(path); err != nil {
		t.Fatalf("CheckPages(intact file) = %v; want nil", err)
	}
	if _, err := boltsurgeon.CycleBucket(path, []byte("b")); err != nil {
		t.Fatal(err)
	}
	var err error
	inTime(t, func() { err = CheckPages(path) })
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "reached twice") {
		t.Fatalf("CheckPages(cyclic file) = %v; want ErrCorrupt naming a page reached twice", err)
	}
}

func TestCheckPagesNoMeta(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not bbolt "), 2000), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckPages(path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("CheckPages(no meta page) = %v; want ErrCorrupt", err)
	}
}

// TestRebuildReachableSkipsTheCycle copies a file with a page cycle: every
// key below the cut-off child comes over with its value, the other bucket
// too, and the cycle is among the problems.
func TestRebuildReachableSkipsTheCycle(t *testing.T) {
	src := boltFile(t, 1000)
	lostKey, err := boltsurgeon.CycleBucket(src, []byte("b"))
	if err != nil {
		t.Fatal(err)
	}
	lost := binary.BigEndian.Uint64(lostKey)
	dst := filepath.Join(t.TempDir(), "copy.db")
	var problems []string
	inTime(t, func() { problems, err = RebuildReachable(src, dst) })
	if err != nil || !strings.Contains(strings.Join(problems, "; "), "reached twice") {
		t.Fatalf("RebuildReachable() = %q, %v; want the cycle among the problems", problems, err)
	}
	db, err := bolt.Open(dst, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		want := uint64(1)
		err := tx.Bucket([]byte("b")).ForEach(func(k, v []byte) error {
			if got := binary.BigEndian.Uint64(k); got != want || !bytes.Equal(v, bytes.Repeat(k, 4)) {
				t.Fatalf("copied key %d (value %x); want %d and its value", got, v, want)
			}
			want++
			return nil
		})
		if want != lost {
			t.Errorf("copied keys 1–%d; want 1–%d, the keys below the cut-off child", want-1, lost-1)
		}
		if v := tx.Bucket([]byte("small")).Get([]byte("k")); string(v) != "v" {
			t.Errorf("inline bucket: k = %q; want v", v)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
