// Package postgres is the receiver's store for fleets: PostgreSQL through
// a pgx connection pool, its schema in versioned migrations embedded in
// the binary and applied under an advisory lock (several replicas may
// start at once), batches written through binary COPY. It passes the
// conformance suite of receiver/store/storetest.
package postgres

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/receiver/store"
)

// migrations are the schema's versions, applied in order by Migrate.
//
//go:embed migrations/*.sql
var migrations embed.FS

// migrationLockKey is the pg_advisory_lock key under which one replica
// migrates while the others wait ("outpost!" as a big-endian int64).
const migrationLockKey = 0x6f7574706f737421

// Postgres is the store for fleets: a pgx connection pool. Batches go
// through COPY into a per-connection temporary staging table, then one
// INSERT … SELECT … ON CONFLICT DO NOTHING into readings.
type Postgres struct {
	pool          *pgxpool.Pool
	receivedIndex atomic.Bool // readings_received_at is known to exist
}

// stagingSQL creates the per-connection staging table; its fate column
// holds the store.Fate of each staged reading. ON COMMIT DELETE
// ROWS empties it at the end of every transaction, committed or not.
const stagingSQL = `CREATE TEMP TABLE IF NOT EXISTS staging (
	fate int NOT NULL, stream bigint NOT NULL, seq bigint NOT NULL, sensor text NOT NULL,
	ts timestamptz NOT NULL, value double precision NOT NULL, unit text NOT NULL,
	labels jsonb, unsynced boolean NOT NULL) ON COMMIT DELETE ROWS`

// createReceivedIndex creates readings_received_at unless it exists.
func (p *Postgres) createReceivedIndex(ctx context.Context) error {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(migrationLockKey)); err != nil {
		return err
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrationLockKey))
	_, err = conn.Exec(ctx, `CREATE INDEX IF NOT EXISTS readings_received_at ON readings USING brin (received_at)`)
	return err
}

// Open connects a pool to the database at url (postgres://…). It does
// not migrate; call Migrate.
func Open(ctx context.Context, url string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, stagingSQL)
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return &Postgres{pool: pool}, nil
}

// Close closes the pool.
func (p *Postgres) Close() { p.pool.Close() }

// Migrate applies the embedded migrations not applied yet, under an
// advisory lock: when several replicas start at once, one migrates and
// the others wait, then find nothing left to do.
func (p *Postgres) Migrate(ctx context.Context) error {
	ms, err := store.LoadMigrations(migrations, "migrations")
	if err != nil {
		return err
	}
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return store.Unavailable("migrate", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(migrationLockKey)); err != nil {
		return store.Unavailable("take the migration lock", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrationLockKey))
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return store.Unavailable("create schema_migrations", err)
	}
	for _, m := range ms {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, m.Version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("apply migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// Ready reports whether the database answers and is fully migrated.
func (p *Postgres) Ready(ctx context.Context) error {
	ms, err := store.LoadMigrations(migrations, "migrations")
	if err != nil {
		return err
	}
	var v *int32
	err = p.pool.QueryRow(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return fmt.Errorf("%w: no schema_migrations table", store.ErrNotMigrated)
	}
	if err != nil {
		return store.Unavailable("check schema version", err)
	}
	if v == nil || int(*v) < len(ms) {
		have := 0
		if v != nil {
			have = int(*v)
		}
		return fmt.Errorf("%w: at version %d, want %d", store.ErrNotMigrated, have, len(ms))
	}
	return nil
}

// storedRangeSQL finds what is stored under a run of seqs of one stream:
// one primary-key range scan.
const storedRangeSQL = `SELECT seq, sensor, ts, value, unit, unsynced FROM readings
	WHERE device_id = $1 AND stream = $2 AND seq BETWEEN $3 AND $4`

// queueStoredKeys queues the queries finding what is stored under the
// keys of rs[first], and sets the fates of those found. A batch is
// usually a run of seqs of one stream: per stream whose seqs of the batch
// are dense, one range query over them (one index range scan, three
// scalars to send); the keys of sparse streams in one query probing each
// key.
func queueStoredKeys(q *pgx.Batch, device string, rs []reading.Reading, first []int, fates []store.Fate) {
	type span struct {
		stream reading.StreamID
		lo, hi uint64
		n      int
		sparse bool
	}
	var spans []span
	spanOf := make(map[reading.StreamID]int, 1) // a batch holds one stream or a handful
	for _, i := range first {
		r := &rs[i]
		j, ok := spanOf[r.Stream]
		if !ok {
			j = len(spans)
			spanOf[r.Stream] = j
			spans = append(spans, span{stream: r.Stream, lo: r.Seq, hi: r.Seq})
		}
		sp := &spans[j]
		sp.lo, sp.hi, sp.n = min(sp.lo, r.Seq), max(sp.hi, r.Seq), sp.n+1
	}
	// at[j][seq-lo] is the index in rs of the reading of that seq of the
	// dense span j (-1: none).
	at := make([][]int32, len(spans))
	nSparse := 0
	for j := range spans {
		sp := &spans[j]
		// A few readings of a stream are probed with the sparse keys: one
		// query for all of them, not one per stream.
		if sp.n < 8 || sp.hi-sp.lo >= 4*uint64(sp.n) || sp.hi > math.MaxInt64 {
			sp.sparse = true
			nSparse += sp.n
			continue
		}
		at[j] = make([]int32, sp.hi-sp.lo+1)
		for k := range at[j] {
			at[j][k] = -1
		}
	}
	for _, i := range first {
		if j := spanOf[rs[i].Stream]; !spans[j].sparse {
			at[j][rs[i].Seq-spans[j].lo] = int32(i)
		}
	}
	for j, sp := range spans {
		if sp.sparse {
			continue
		}
		at, lo := at[j], sp.lo
		q.Queue(storedRangeSQL, device, int64(sp.stream), int64(sp.lo), int64(sp.hi)).Query(func(rows pgx.Rows) error {
			var seq int64
			var st reading.Reading
			for rows.Next() {
				if err := rows.Scan(&seq, &st.Sensor, &st.Time, &st.Value, &st.Unit, &st.Unsynced); err != nil {
					return err
				}
				if i := at[uint64(seq)-lo]; i >= 0 {
					fates[i] = store.Classify(&st, &rs[i])
				}
			}
			return rows.Err()
		})
	}
	if nSparse == 0 {
		return
	}
	streams, seqs, idxs := make([]int64, 0, nSparse), make([]int64, 0, nSparse), make([]int32, 0, nSparse)
	for _, i := range first {
		if spans[spanOf[rs[i].Stream]].sparse {
			streams, seqs, idxs = append(streams, int64(rs[i].Stream)), append(seqs, int64(rs[i].Seq)), append(idxs, int32(i))
		}
	}
	q.Queue(storedKeysSQL, device, streams, seqs, idxs).Query(func(rows pgx.Rows) error {
		var idx int32
		var st reading.Reading
		for rows.Next() {
			if err := rows.Scan(&idx, &st.Sensor, &st.Time, &st.Value, &st.Unit, &st.Unsynced); err != nil {
				return err
			}
			fates[idx] = store.Classify(&st, &rs[idx])
		}
		return rows.Err()
	})
}

// storedKeysSQL finds what is stored under keys given as arrays. One
// primary-key probe per key (LATERAL, OFFSET 0 keeps the planner from
// flattening it): the hash join over all of the device's readings that
// the planner likes for 500 keys costs time in proportion to the table.
const storedKeysSQL = `SELECT k.idx, r.sensor, r.ts, r.value, r.unit, r.unsynced
	FROM unnest($2::bigint[], $3::bigint[], $4::int[]) AS k(stream, seq, idx),
	LATERAL (SELECT sensor, ts, value, unit, unsynced FROM readings
		WHERE device_id = $1 AND stream = k.stream AND seq = k.seq OFFSET 0) AS r`

// errRace marks a batch that raced another transaction storing the same
// keys (another replica, a redelivery): it is simply run again.
var errRace = errors.New("concurrent insert of the same keys")

// Ingest stores a batch in one transaction.
func (p *Postgres) Ingest(ctx context.Context, device string, b *store.Batch) (store.Result, error) {
	for attempt := 1; ; attempt++ {
		res, err := p.ingest(ctx, device, b)
		if errors.Is(err, errRace) && attempt < 5 {
			continue
		}
		if err != nil {
			return store.Result{}, store.Unavailable("ingest batch", err)
		}
		return res, nil
	}
}

func (p *Postgres) ingest(ctx context.Context, device string, b *store.Batch) (res store.Result, err error) {
	rs := b.Readings
	first, fates := store.Dedupe(rs)
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return store.Result{}, err
	}
	// A connection left inside a transaction (a failed rollback) is not
	// idle, and the pool closes it instead of reusing it.
	defer conn.Release()
	c := conn.Conn()
	defer func() {
		if err != nil && c.PgConn().TxStatus() != 'I' && !c.IsClosed() {
			c.Exec(ctx, "rollback")
		}
	}()
	// BEGIN goes in one round trip with the queries for what is already
	// stored under the batch's keys (duplicates, corrections or
	// conflicts). No row lock: stored readings change only by a
	// correction, and that UPDATE checks what it changes.
	begin := &pgx.Batch{}
	begin.Queue("begin")
	queueStoredKeys(begin, device, rs, first, fates)
	if err := c.SendBatch(ctx, begin).Close(); err != nil {
		return store.Result{}, fmt.Errorf("find stored keys: %w", err)
	}
	n, err := stage(ctx, c, rs, fates)
	if err != nil {
		return store.Result{}, err
	}
	if err := commitStaged(ctx, c, device, b, fates, n); err != nil {
		return store.Result{}, err
	}
	return store.Tally(rs, fates), nil
}

// staged counts the readings of a batch in the staging table, by fate.
type staged struct{ new, corrected, conflicts int }

// stage COPYs what must be written (new readings, corrections, conflicts)
// into the staging table; a batch of duplicates writes nothing but its
// accounting.
func stage(ctx context.Context, c *pgx.Conn, rs []reading.Reading, fates []store.Fate) (staged, error) {
	var write []int
	var n staged
	for i, f := range fates {
		switch f {
		case store.FateNew:
			n.new++
		case store.FateCorrected:
			n.corrected++
		case store.FateConflict:
			n.conflicts++
		default:
			continue
		}
		write = append(write, i)
	}
	if len(write) == 0 {
		return n, nil
	}
	buf := copyBufs.Get().(*bytes.Buffer)
	defer copyBufs.Put(buf)
	if err := copyRows(buf, rs, fates, write); err != nil {
		return staged{}, err
	}
	if _, err := c.PgConn().CopyFrom(ctx, buf, copyStagingSQL); err != nil {
		return staged{}, fmt.Errorf("copy into staging: %w", err)
	}
	return n, nil
}

// commitStaged moves the staged readings where their fates say, updates
// the accounting of the batch's streams, dropped ranges and device, and
// commits. It returns errRace when another transaction stored or
// corrected some of the batch's keys since they were looked up.
func commitStaged(ctx context.Context, c *pgx.Conn, device string, b *store.Batch, fates []store.Fate, n staged) error {
	batch := &pgx.Batch{}
	var inserted, corrected *pgconn.CommandTag
	if n.new > 0 {
		batch.Queue(`INSERT INTO readings
			(device_id, stream, seq, sensor, ts, value, unit, labels, unsynced, received_at)
			SELECT $1, stream, seq, sensor, ts, value, unit, labels, unsynced, $2 FROM staging WHERE fate = $3
			ON CONFLICT DO NOTHING`, device, b.ReceivedAt, int32(store.FateNew)).Exec(func(ct pgconn.CommandTag) error {
			inserted = &ct
			return nil
		})
	}
	if n.corrected > 0 {
		batch.Queue(`UPDATE readings r SET ts = s.ts, unsynced = false, received_at = $2
			FROM staging s WHERE s.fate = $3 AND r.device_id = $1 AND r.stream = s.stream AND r.seq = s.seq AND r.unsynced`,
			device, b.ReceivedAt, int32(store.FateCorrected)).Exec(func(ct pgconn.CommandTag) error {
			corrected = &ct
			return nil
		})
	}
	if n.conflicts > 0 {
		// Both versions: what arrived, and what is stored (inserted
		// above when the batch itself holds the first version).
		batch.Queue(`INSERT INTO conflicts (device_id, stream, seq, sensor, ts, value, unit, labels, unsynced, received_at,
				stored_sensor, stored_ts, stored_value, stored_unit, stored_unsynced)
			SELECT $1, s.stream, s.seq, s.sensor, s.ts, s.value, s.unit, s.labels, s.unsynced, $2,
				r.sensor, r.ts, r.value, r.unit, r.unsynced
			FROM staging s LEFT JOIN readings r ON r.device_id = $1 AND r.stream = s.stream AND r.seq = s.seq
			WHERE s.fate = $3 ORDER BY s.stream, s.seq LIMIT $4`,
			device, b.ReceivedAt, int32(store.FateConflict), store.MaxConflictsPerBatch)
		batch.Queue(`DELETE FROM conflicts WHERE device_id = $1 AND id <=
			(SELECT id FROM conflicts WHERE device_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)`, device, store.MaxConflictsKept)
	}
	for _, d := range store.StreamDeltas(b.Readings, fates) {
		batch.Queue(`INSERT INTO streams AS s (device_id, stream, highest_seq, received, first_received_at, last_received_at, conflicts, corrected)
			VALUES ($1, $2, $3, $4, $5, $5, $6, $7)
			ON CONFLICT (device_id, stream) DO UPDATE SET highest_seq = greatest(s.highest_seq, excluded.highest_seq),
			received = s.received + excluded.received, last_received_at = excluded.last_received_at,
			conflicts = s.conflicts + excluded.conflicts, corrected = s.corrected + excluded.corrected`,
			device, int64(d.Stream), int64(d.HighestSeq), d.Added, b.ReceivedAt, d.Conflicts, d.Corrected)
	}
	for _, d := range b.Dropped {
		batch.Queue(`INSERT INTO dropped_ranges (device_id, stream, seq_from, seq_to, received_at)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, device, int64(d.Stream), int64(d.From), int64(d.To), b.ReceivedAt)
	}
	batch.Queue(`UPDATE devices SET last_seen = $2 WHERE id = $1`, device, b.ReceivedAt)
	// Without new or corrected readings nothing is left to check after
	// these statements, and COMMIT goes in their round trip: if one of
	// them fails, the server skips the rest, COMMIT included.
	var commit *pgconn.CommandTag
	if n.new == 0 && n.corrected == 0 {
		batch.Queue("commit").Exec(func(ct pgconn.CommandTag) error {
			commit = &ct
			return nil
		})
	}
	if err := c.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("store batch: %w", err)
	}
	if commit == nil {
		// Another transaction stored or corrected some of these keys
		// since they were looked up (another replica, a redelivery): run
		// again.
		if (inserted != nil && int(inserted.RowsAffected()) != n.new) || (corrected != nil && int(corrected.RowsAffected()) != n.corrected) {
			return errRace
		}
		ct, err := c.Exec(ctx, "commit")
		if err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		commit = &ct
	}
	if commit.String() != "COMMIT" {
		return fmt.Errorf("commit: %w", pgx.ErrTxCommitRollback)
	}
	return nil
}

// authenticateSQL finds the device of a token: its current one, or one
// it had before a rotation whose grace has not ended.
const authenticateSQL = `SELECT d.id, t.hash, d.revoked_at FROM (
		SELECT id AS device_id, token_hash AS hash FROM devices WHERE token_hash = $1
		UNION ALL
		SELECT device_id, token_hash FROM previous_tokens WHERE token_hash = $1 AND expires_at > now()
	) AS t JOIN devices d ON d.id = t.device_id LIMIT 1`

// Authenticate returns the device whose token hashes to tokenHash.
func (p *Postgres) Authenticate(ctx context.Context, tokenHash []byte) (string, error) {
	var id string
	var stored []byte
	var revoked *time.Time
	err := p.pool.QueryRow(ctx, authenticateSQL, tokenHash).Scan(&id, &stored, &revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", store.ErrUnknownToken
	}
	if err != nil {
		return "", store.Unavailable("authenticate", err)
	}
	if !store.HashesEqual(stored, tokenHash) {
		return "", store.ErrUnknownToken
	}
	if revoked != nil {
		return "", store.ErrRevoked
	}
	return id, nil
}

// CheckDevice reports whether the device is registered and not revoked.
func (p *Postgres) CheckDevice(ctx context.Context, id string) error {
	var revoked *time.Time
	err := p.pool.QueryRow(ctx, `SELECT revoked_at FROM devices WHERE id = $1`, id).Scan(&revoked)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.ErrUnknownDevice
	case err != nil:
		return store.Unavailable("check device", err)
	case revoked != nil:
		return store.ErrRevoked
	}
	return nil
}

// DevicesGeneration returns the counter that every change of a device's
// registration increases (a trigger on devices, migration 0004).
func (p *Postgres) DevicesGeneration(ctx context.Context) (int64, error) {
	var g int64
	if err := p.pool.QueryRow(ctx, `SELECT generation FROM device_generation`).Scan(&g); err != nil {
		return 0, store.Unavailable("read device generation", err)
	}
	return g, nil
}

// RotateToken gives the device a new token; see store.Store.
func (p *Postgres) RotateToken(ctx context.Context, id string, tokenHash []byte, grace time.Duration, at time.Time) error {
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var old []byte
		var revoked *time.Time
		err := tx.QueryRow(ctx, `SELECT token_hash, revoked_at FROM devices WHERE id = $1 FOR UPDATE`, id).Scan(&old, &revoked)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %s", store.ErrUnknownDevice, id)
		}
		if err != nil {
			return err
		}
		// A revoked device's old tokens stay dead; expired ones go.
		if _, err := tx.Exec(ctx, `DELETE FROM previous_tokens WHERE device_id = $1 AND (expires_at <= $2 OR $3)`,
			id, at, revoked != nil); err != nil {
			return err
		}
		if revoked == nil && grace > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO previous_tokens (token_hash, device_id, expires_at) VALUES ($1, $2, $3)`,
				old, id, at.Add(grace)); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `UPDATE devices SET token_hash = $2, revoked_at = NULL WHERE id = $1`, id, tokenHash)
		return err
	})
	if errors.Is(err, store.ErrUnknownDevice) {
		return err
	}
	if err != nil {
		return store.Unavailable("rotate token", err)
	}
	return nil
}

// DeleteReceivedBefore deletes at most limit readings received before t.
// Its first call creates the index on received_at that it needs (BRIN:
// tiny, and nearly free to keep up as readings arrive in time order),
// under the migration lock, as replicas may start retention together.
func (p *Postgres) DeleteReceivedBefore(ctx context.Context, t time.Time, limit int) (int64, error) {
	if !p.receivedIndex.Load() {
		if err := p.createReceivedIndex(ctx); err != nil {
			return 0, store.Unavailable("create index for retention", err)
		}
		p.receivedIndex.Store(true)
	}
	tag, err := p.pool.Exec(ctx, `DELETE FROM readings WHERE ctid = ANY(ARRAY(
		SELECT ctid FROM readings WHERE received_at < $1 LIMIT $2))`, t, limit)
	if err != nil {
		return 0, store.Unavailable("delete old readings", err)
	}
	return tag.RowsAffected(), nil
}

// SaveStatus keeps status as the device's last heartbeat.
func (p *Postgres) SaveStatus(ctx context.Context, device string, status []byte, at time.Time) error {
	dl, _ := store.StatusDeadLetters(status)
	_, err := p.pool.Exec(ctx, `UPDATE devices SET last_status = $2, last_status_at = $3, last_seen = $3,
		dead_letter_ranges = coalesce($4::jsonb, dead_letter_ranges) WHERE id = $1`,
		device, string(status), at, dl)
	if err != nil {
		return store.Unavailable("save status", err)
	}
	return nil
}

// AddDevice registers a device with the hash of its token.
func (p *Postgres) AddDevice(ctx context.Context, id string, tokenHash []byte, at time.Time) error {
	_, err := p.pool.Exec(ctx, `INSERT INTO devices (id, token_hash, created_at) VALUES ($1, $2, $3)`, id, tokenHash, at)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
		return fmt.Errorf("%w: %s", store.ErrDeviceExists, id)
	}
	if err != nil {
		return store.Unavailable("add device", err)
	}
	return nil
}

// RevokeDevice revokes the device's token.
func (p *Postgres) RevokeDevice(ctx context.Context, id string, at time.Time) error {
	var n int64
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE devices SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1`, id, at)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		_, err = tx.Exec(ctx, `DELETE FROM previous_tokens WHERE device_id = $1`, id)
		return err
	})
	if err != nil {
		return store.Unavailable("revoke device", err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %s", store.ErrUnknownDevice, id)
	}
	return nil
}

// Devices lists the devices with their stream accounting.
func (p *Postgres) Devices(ctx context.Context) ([]store.Device, error) {
	rows, err := p.pool.Query(ctx, `SELECT id, created_at, revoked_at, last_seen, last_status::text, last_status_at FROM devices ORDER BY id`)
	if err != nil {
		return nil, store.Unavailable("list devices", err)
	}
	var out []store.Device
	for rows.Next() {
		var d store.Device
		var status *string
		if err := rows.Scan(&d.ID, &d.Created, &d.Revoked, &d.LastSeen, &status, &d.LastStatusAt); err != nil {
			rows.Close()
			return nil, store.Unavailable("list devices", err)
		}
		d.Created = d.Created.UTC()
		d.Revoked, d.LastSeen, d.LastStatusAt = utcPtr(d.Revoked), utcPtr(d.LastSeen), utcPtr(d.LastStatusAt)
		if status != nil {
			d.LastStatus = json.RawMessage(*status)
			d.Clock = store.HeartbeatClock(d.LastStatus)
		}
		out = append(out, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, store.Unavailable("list devices", err)
	}
	for i := range out {
		if out[i].Streams, err = p.streamSummaries(ctx, out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func (p *Postgres) streamSummaries(ctx context.Context, device string) ([]store.StreamSummary, error) {
	dropped, err := p.droppedRanges(ctx, device)
	if err != nil {
		return nil, err
	}
	dead, err := p.deadLettered(ctx, device)
	if err != nil {
		return nil, err
	}
	rows, err := p.pool.Query(ctx, `SELECT stream, highest_seq, received, conflicts, corrected FROM streams
		WHERE device_id = $1 ORDER BY first_received_at, stream`, device)
	if err != nil {
		return nil, store.Unavailable("list streams", err)
	}
	defer rows.Close()
	out, err := store.ScanSummaries(rows, dropped, dead)
	if err != nil {
		return nil, store.Unavailable("list streams", err)
	}
	return out, nil
}

func (p *Postgres) droppedRanges(ctx context.Context, device string) (map[reading.StreamID][][2]uint64, error) {
	rows, err := p.pool.Query(ctx, `SELECT stream, seq_from, seq_to FROM dropped_ranges WHERE device_id = $1 ORDER BY stream, seq_from`, device)
	if err != nil {
		return nil, store.Unavailable("list dropped ranges", err)
	}
	defer rows.Close()
	out, err := store.ScanRanges(rows)
	if err != nil {
		return nil, store.Unavailable("list dropped ranges", err)
	}
	return out, nil
}

const pgReadingColumns = `stream, seq, sensor, ts, value, unit, labels, unsynced, received_at`

func scanPgReading(rows pgx.Rows, device string) (store.Stored, error) {
	var st store.Stored
	var stream, seq int64
	if err := rows.Scan(&stream, &seq, &st.Sensor, &st.Time, &st.Value, &st.Unit, &st.Labels, &st.Unsynced, &st.ReceivedAt); err != nil {
		return st, err
	}
	st.Device, st.Stream, st.Seq = device, reading.StreamID(stream), uint64(seq)
	st.Time, st.ReceivedAt = st.Time.UTC(), st.ReceivedAt.UTC()
	return st, nil
}

// Latest returns the newest reading of each sensor of the device.
func (p *Postgres) Latest(ctx context.Context, device string) ([]store.Stored, error) {
	rows, err := p.pool.Query(ctx, `SELECT DISTINCT ON (sensor) `+pgReadingColumns+`
		FROM readings WHERE device_id = $1 ORDER BY sensor, ts DESC, seq DESC`, device)
	if err != nil {
		return nil, store.Unavailable("latest readings", err)
	}
	defer rows.Close()
	out := []store.Stored{}
	for rows.Next() {
		st, err := scanPgReading(rows, device)
		if err != nil {
			return nil, store.Unavailable("latest readings", err)
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, store.Unavailable("latest readings", err)
	}
	return out, nil
}

// Gaps returns what never arrived of each stream of the device.
func (p *Postgres) Gaps(ctx context.Context, device string) ([]store.StreamGaps, error) {
	dropped, err := p.droppedRanges(ctx, device)
	if err != nil {
		return nil, err
	}
	rows, err := p.pool.Query(ctx, store.IslandsSQL("$1"), device)
	if err != nil {
		return nil, store.Unavailable("find gaps", err)
	}
	defer rows.Close()
	is, err := store.ScanIslands(rows)
	if err != nil {
		return nil, store.Unavailable("find gaps", err)
	}
	dead, err := p.deadLettered(ctx, device)
	if err != nil {
		return nil, err
	}
	conflicts, err := p.conflictRows(ctx, device)
	if err != nil {
		return nil, err
	}
	return store.BuildGaps(is, dropped, dead, conflicts), nil
}

// Readings calls fn for each reading of q, in device time order.
func (p *Postgres) Readings(ctx context.Context, q store.Query, fn func(*store.Stored) error) error {
	sqlText := `SELECT ` + pgReadingColumns + ` FROM readings WHERE device_id = $1`
	args := []any{q.Device}
	if q.Sensor != "" {
		args = append(args, q.Sensor)
		sqlText += fmt.Sprintf(` AND sensor = $%d`, len(args))
	}
	if !q.From.IsZero() {
		args = append(args, q.From)
		sqlText += fmt.Sprintf(` AND ts >= $%d`, len(args))
	}
	if !q.To.IsZero() {
		args = append(args, q.To)
		sqlText += fmt.Sprintf(` AND ts < $%d`, len(args))
	}
	if q.Clock != store.ClockAll {
		args = append(args, q.Clock == store.ClockUnsynced)
		sqlText += fmt.Sprintf(` AND unsynced = $%d`, len(args))
	}
	sqlText += ` ORDER BY ts, stream, seq`
	rows, err := p.pool.Query(ctx, sqlText, args...)
	if err != nil {
		return store.Unavailable("query readings", err)
	}
	defer rows.Close()
	for rows.Next() {
		st, err := scanPgReading(rows, q.Device)
		if err != nil {
			return store.Unavailable("query readings", err)
		}
		if err := fn(&st); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return store.Unavailable("query readings", err)
	}
	return nil
}

// Reject keeps a message that can never be stored.
func (p *Postgres) Reject(ctx context.Context, m store.Rejected) error {
	m = m.Kept()
	_, err := p.pool.Exec(ctx, `INSERT INTO rejected_messages (topic, device_id, error, line, payload, payload_size, payload_sha256, received_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, m.Topic, m.Device, m.Err, m.Line, m.Payload, m.Size, m.SHA256, m.ReceivedAt)
	if err != nil {
		return store.Unavailable("keep rejected message", err)
	}
	return nil
}

// deadLettered returns the ranges the device last reported dead-lettered.
func (p *Postgres) deadLettered(ctx context.Context, device string) (map[reading.StreamID][][2]uint64, error) {
	var raw *string
	err := p.pool.QueryRow(ctx, `SELECT dead_letter_ranges::text FROM devices WHERE id = $1`, device).Scan(&raw)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, store.Unavailable("read dead-letter ranges", err)
	}
	if raw == nil {
		return store.DeadLetterRanges(nil), nil
	}
	return store.DeadLetterRanges([]byte(*raw)), nil
}

// conflictRows returns the device's newest conflicts, per stream.
func (p *Postgres) conflictRows(ctx context.Context, device string) (map[reading.StreamID][]store.Conflict, error) {
	rows, err := p.pool.Query(ctx, `SELECT stream, seq, sensor, ts, value, unit, unsynced, received_at,
		stored_sensor, stored_ts, stored_value, stored_unit, stored_unsynced
		FROM conflicts WHERE device_id = $1 ORDER BY id DESC LIMIT $2`, device, store.MaxConflictsShown)
	if err != nil {
		return nil, store.Unavailable("list conflicts", err)
	}
	defer rows.Close()
	out := map[reading.StreamID][]store.Conflict{}
	for rows.Next() {
		var stream, seq int64
		var c store.Conflict
		var ss, su *string
		var sts *time.Time
		var sv *float64
		var sunsynced *bool
		var unsynced bool
		if err := rows.Scan(&stream, &seq, &c.Received.Sensor, &c.Received.Timestamp, &c.Received.Value, &c.Received.Unit, &unsynced,
			&c.ReceivedAt, &ss, &sts, &sv, &su, &sunsynced); err != nil {
			return nil, store.Unavailable("list conflicts", err)
		}
		c.Seq = uint64(seq)
		c.Received.Timestamp, c.Received.Clock, c.ReceivedAt = c.Received.Timestamp.UTC(), store.ClockOf(unsynced), c.ReceivedAt.UTC()
		if ss != nil && sts != nil && sv != nil && su != nil && sunsynced != nil {
			c.Stored = &store.ConflictVersion{Sensor: *ss, Value: *sv, Unit: *su, Timestamp: sts.UTC(), Clock: store.ClockOf(*sunsynced)}
		}
		out[reading.StreamID(stream)] = append(out[reading.StreamID(stream)], c)
	}
	if err := rows.Err(); err != nil {
		return nil, store.Unavailable("list conflicts", err)
	}
	return out, nil
}

// Interface guard.
var _ store.Store = (*Postgres)(nil)
