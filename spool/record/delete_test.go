package record

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// DeleteRange deletes top down with a cursor that steps back over leaves
// it has already changed in the same transaction: check it against a model
// over many leaves, with ranges that overlap, repeat, run past either end
// or hit nothing, several to a transaction (as a commit applies its acks).
func TestDeleteRangeAgainstModel(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "d.db"), 0o600, &bolt.Options{PageSize: PageSize, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const n = 20000
	model := map[uint64]int{} // seq → value length
	rng := rand.New(rand.NewPCG(7, 11))
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("s"))
		if err != nil {
			return err
		}
		b.FillPercent = 1
		for seq := uint64(1); seq <= n; seq++ {
			if seq%97 == 0 { // some gaps, as dead letters leave
				continue
			}
			v := make([]byte, 10+rng.IntN(30))
			if err := b.Put(Itob(seq), v); err != nil {
				return err
			}
			model[seq] = len(v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for round := range 40 {
		err := db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("s"))
			for range 1 + rng.IntN(8) {
				from := uint64(rng.IntN(n+200)) + 1
				to := from + uint64(rng.IntN(3000))
				if rng.IntN(5) == 0 {
					to = from // one seq
				}
				var wantN, wantSize uint64
				for seq := from; seq <= to; seq++ {
					if l, ok := model[seq]; ok {
						wantN++
						wantSize += uint64(8 + l + EntryOverhead)
						delete(model, seq)
					}
				}
				gotN, gotSize, err := DeleteRange(b, from, to)
				if err != nil {
					return err
				}
				if gotN != wantN || gotSize != wantSize {
					t.Fatalf("round %d: DeleteRange(%d, %d) = %d readings, %d bytes; want %d, %d", round, from, to, gotN, gotSize, wantN, wantSize)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = db.View(func(tx *bolt.Tx) error {
			left := 0
			err := tx.Bucket([]byte("s")).ForEach(func(k, v []byte) error {
				if l, ok := model[Btoi(k)]; !ok || l != len(v) {
					t.Fatalf("round %d: seq %d is still stored; the model deleted it", round, Btoi(k))
				}
				left++
				return nil
			})
			if left != len(model) {
				t.Fatalf("round %d: %d readings left; the model keeps %d", round, left, len(model))
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(model) > n/2 {
		t.Fatalf("the rounds deleted too little to test anything: %d of %d left", len(model), n)
	}
}
