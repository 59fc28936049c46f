package journal

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func replayAll(t *testing.T, j *Journal) []string {
	t.Helper()
	var got []string
	if err := j.Replay(func(p []byte) error { got = append(got, string(p)); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

func reopen(t *testing.T, j *Journal, path string) *Journal {
	t.Helper()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestJournal covers appends, a reset carrying records over (at the front
// or after the current generation), growth past the preallocation, stale
// generations and a torn record, through the mapping and through pwrite.
func TestJournal(t *testing.T) {
	for _, mapped := range []bool{true, false} {
		t.Run(fmt.Sprintf("mmap=%v", mapped), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "spool.db.journal")
			j, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if !mapped {
				_ = unix.Munmap(j.m)
				j.m = nil
			}
			if got := replayAll(t, j); len(got) != 0 {
				t.Fatalf("new journal replays %q", got)
			}
			for _, p := range []string{"a", "bb", "ccc"} {
				if err := j.Append([]byte(p)); err != nil {
					t.Fatal(err)
				}
			}
			j = reopen(t, j, path)
			if got := replayAll(t, j); !slices.Equal(got, []string{"a", "bb", "ccc"}) {
				t.Fatalf("replay = %q", got)
			}
			carry := []string{"ccc"} // does not fit before the current start: goes after it
			for round := range 3 {
				if err := j.Reset(len(carry), func(i int, b []byte) []byte { return append(b, carry[i]...) }); err != nil {
					t.Fatal(err)
				}
				if err := j.Append(fmt.Appendf(nil, "r%d", round)); err != nil {
					t.Fatal(err)
				}
				want := append(slices.Clone(carry), fmt.Sprintf("r%d", round))
				j = reopen(t, j, path)
				if got := replayAll(t, j); !slices.Equal(got, want) {
					t.Fatalf("round %d: replay = %q; want %q (stale records must not replay)", round, got, want)
				}
				carry = want[len(want)-1:]
			}
			// Growth: more than the preallocated 64 KiB.
			if err := j.Reset(0, nil); err != nil {
				t.Fatal(err)
			}
			big := make([]byte, 1000)
			for i := range 200 {
				big[0] = byte(i)
				if err := j.Append(big); err != nil {
					t.Fatal(err)
				}
			}
			j = reopen(t, j, path)
			if got := replayAll(t, j); len(got) != 200 || got[199][0] != 199 {
				t.Fatalf("after growth %d records replay", len(got))
			}
			// A torn record ends the replay there.
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			at := HeaderSize + 100*(recordHead+1000) + recordHead + 500
			data[at] ^= 1
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			j, err = Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := replayAll(t, j); len(got) != 100 {
				t.Fatalf("a torn record 101: %d records replay; want 100", len(got))
			}
			// A damaged header empties the journal.
			_ = j.Close()
			data[9] ^= 1
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			j, err = Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := replayAll(t, j); len(got) != 0 {
				t.Fatalf("a bad header: %d records replay", len(got))
			}
			_ = j.Close()
		})
	}
}
