// Package sqlite is the receiver's embedded store, the default when no
// PostgreSQL is given: one SQLite file (modernc.org/sqlite, pure Go) for a
// single small node or a Pi acting as a field base station, its schema in
// versioned migrations embedded in the binary. It passes the conformance
// suite of receiver/store/storetest.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/receiver/store"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// migrations are the schema's versions, applied in order by Migrate.
//
//go:embed migrations/*.sql
var migrations embed.FS

// SQLite is the embedded store: one database file, for a single small node
// (or a Pi acting as a field base station). Writes are serialised; each
// batch is one IMMEDIATE transaction, synced to disk before it is answered
// (WAL, synchronous=FULL).
type SQLite struct {
	db *sql.DB
	mu writeLock // serialises write transactions

	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt // the ingest path's statements, prepared once

	receivedIndex bool // readings_received_at exists (guarded by mu)
}

// writeLock serialises the store's write transactions (SQLite has one
// writer) in arrival order, and a waiter whose context ends leaves the
// queue: a request that gave up, or ran out of its ingest timeout, does
// not hold the others behind a batch nobody waits for.
type writeLock struct {
	once sync.Once
	ch   chan struct{}
}

func (l *writeLock) init() { l.once.Do(func() { l.ch = make(chan struct{}, 1) }) }

// LockContext takes the lock, or returns ctx's error.
func (l *writeLock) LockContext(ctx context.Context) error {
	l.init()
	select {
	case l.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the database's writer: %w", context.Cause(ctx))
	}
}

// Lock takes the lock, however long it takes.
func (l *writeLock) Lock() { l.LockContext(context.Background()) }

// Unlock releases the lock.
func (l *writeLock) Unlock() { <-l.ch }

// stmt returns query prepared (once: parsing a statement costs about as
// much as running these small ones). database/sql prepares it again on
// each connection it runs on, once, and Tx.StmtContext reuses that.
func (s *SQLite) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if st, ok := s.stmts[query]; ok {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if s.stmts == nil {
		s.stmts = map[string]*sql.Stmt{}
	}
	s.stmts[query] = st
	return st, nil
}

// txExec runs the prepared query in tx.
func (s *SQLite) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	st, err := s.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
}

// txQuery runs the prepared query in tx.
func (s *SQLite) txQuery(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	st, err := s.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
}

// Open opens (creating if needed) the database file at path. It does
// not migrate; call Migrate.
func Open(ctx context.Context, path string) (*SQLite, error) {
	q := url.Values{}
	// temp_store(MEMORY) keeps statement journals in memory: each
	// multi-row INSERT of a batch may abort (foreign key, NOT NULL), so
	// SQLite journals the pages it changes to undo that one statement,
	// and past 64 KiB it wrote them to a temporary file, a pwrite per
	// page. Only the statement's own undo is there; the transaction's
	// durability is the WAL's.
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)", "temp_store(MEMORY)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return &SQLite{db: db}, nil
}

// Close closes the database.
func (s *SQLite) Close() {
	s.stmtMu.Lock()
	for _, st := range s.stmts {
		st.Close()
	}
	s.stmts = nil
	s.stmtMu.Unlock()
	s.db.Close()
}

// Migrate applies the embedded migrations not applied yet, each in its
// own transaction.
func (s *SQLite) Migrate(ctx context.Context) error {
	ms, err := store.LoadMigrations(migrations, "migrations")
	if err != nil {
		return err
	}
	if err := s.mu.LockContext(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for _, m := range ms {
		err := s.tx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, m.Version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.Version, m.Name, micros(time.Now()))
			return err
		})
		if err != nil {
			return fmt.Errorf("apply migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// Ready reports whether the database answers and is fully migrated.
func (s *SQLite) Ready(ctx context.Context) error {
	ms, err := store.LoadMigrations(migrations, "migrations")
	if err != nil {
		return err
	}
	var v sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v); err != nil {
		if isNoTable(err) {
			return fmt.Errorf("%w: no schema_migrations table", store.ErrNotMigrated)
		}
		return store.Unavailable("check schema version", err)
	}
	if int(v.Int64) < len(ms) {
		return fmt.Errorf("%w: at version %d, want %d", store.ErrNotMigrated, v.Int64, len(ms))
	}
	return nil
}

func isNoTable(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_ERROR
}

func (s *SQLite) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// sqliteChunk is how many readings one INSERT statement carries (ten
// parameters each, well under SQLite's limit of 32766).
const sqliteChunk = 100

const sqliteInsertHead = `INSERT INTO readings
	(device_id, stream, seq, sensor, ts, value, unit, labels, unsynced, received_at) VALUES `

var sqliteInsertChunk = sqliteInsertSQL(sqliteChunk)

func sqliteInsertSQL(n int) string {
	return sqliteInsertHead + strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?),", n), ",") + ` ON CONFLICT DO NOTHING`
}

// Ingest stores a batch in one transaction: it reads what is already
// stored under the batch's keys (one range query per stream), classifies,
// then inserts the new readings a hundred per statement.
func (s *SQLite) Ingest(ctx context.Context, device string, b *store.Batch) (store.Result, error) {
	rs := b.Readings
	first, fates := store.Dedupe(rs)
	now := micros(b.ReceivedAt)
	if err := s.mu.LockContext(ctx); err != nil {
		return store.Result{}, store.Unavailable("ingest batch", err)
	}
	defer s.mu.Unlock()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		stored, err := s.storedKeys(ctx, tx, device, rs, first)
		if err != nil {
			return err
		}
		var fresh []int
		for _, i := range first {
			st, ok := stored[store.Key{Stream: rs[i].Stream, Seq: rs[i].Seq}]
			if !ok {
				fresh = append(fresh, i)
				continue
			}
			fates[i] = store.Classify(&st, &rs[i])
		}
		args := make([]any, 0, 10*sqliteChunk)
		for len(fresh) > 0 {
			n := min(len(fresh), sqliteChunk)
			args = args[:0]
			for _, i := range fresh[:n] {
				r := &rs[i]
				labels, err := labelsJSON(r.Labels)
				if err != nil {
					return err
				}
				args = append(args, device, int64(r.Stream), int64(r.Seq), r.Sensor, micros(r.Time), r.Value, r.Unit, labels, r.Unsynced, now)
			}
			q := sqliteInsertChunk
			if n < sqliteChunk {
				q = sqliteInsertSQL(n)
			}
			res, err := s.txExec(ctx, tx, q, args...)
			if err != nil {
				return err
			}
			if got, err := res.RowsAffected(); err != nil {
				return err
			} else if got != int64(n) {
				return fmt.Errorf("inserted %d of %d new readings", got, n)
			}
			fresh = fresh[n:]
		}
		kept := 0 // conflict rows written
		for i, f := range fates {
			r := &rs[i]
			if f == store.FateConflict && kept >= store.MaxConflictsPerBatch {
				continue // counted, not kept
			}
			switch f {
			case store.FateCorrected:
				if _, err := tx.ExecContext(ctx, `UPDATE readings SET ts = ?, unsynced = 0, received_at = ?
					WHERE device_id = ? AND stream = ? AND seq = ?`, micros(r.Time), now, device, int64(r.Stream), int64(r.Seq)); err != nil {
					return err
				}
			case store.FateConflict:
				labels, err := labelsJSON(r.Labels)
				if err != nil {
					return err
				}
				// Both versions: what arrived, and what is stored (inserted
				// above when the batch itself holds the first version).
				if _, err := tx.ExecContext(ctx, `INSERT INTO conflicts
					(device_id, stream, seq, sensor, ts, value, unit, labels, unsynced, received_at,
					 stored_sensor, stored_ts, stored_value, stored_unit, stored_unsynced)
					SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, r.sensor, r.ts, r.value, r.unit, r.unsynced
					FROM (SELECT 1) LEFT JOIN readings r ON r.device_id = ?1 AND r.stream = ?2 AND r.seq = ?3`,
					device, int64(r.Stream), int64(r.Seq), r.Sensor, micros(r.Time),
					r.Value, r.Unit, labels, r.Unsynced, now); err != nil {
					return err
				}
				kept++
			}
		}
		if kept > 0 {
			if _, err := s.txExec(ctx, tx, `DELETE FROM conflicts WHERE device_id = ?1 AND id <=
				(SELECT id FROM conflicts WHERE device_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)`, device, store.MaxConflictsKept); err != nil {
				return err
			}
		}
		for _, d := range store.StreamDeltas(rs, fates) {
			if _, err := s.txExec(ctx, tx, `INSERT INTO streams
				(device_id, stream, highest_seq, received, first_received_at, last_received_at, conflicts, corrected)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (device_id, stream) DO UPDATE SET highest_seq = max(highest_seq, excluded.highest_seq),
				received = received + excluded.received, last_received_at = excluded.last_received_at,
				conflicts = conflicts + excluded.conflicts, corrected = corrected + excluded.corrected`,
				device, int64(d.Stream), int64(d.HighestSeq), d.Added, now, now, d.Conflicts, d.Corrected); err != nil {
				return err
			}
		}
		for _, d := range b.Dropped {
			if _, err := s.txExec(ctx, tx, `INSERT INTO dropped_ranges (device_id, stream, seq_from, seq_to, received_at)
				VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`, device, int64(d.Stream), int64(d.From), int64(d.To), now); err != nil {
				return err
			}
		}
		_, err = s.txExec(ctx, tx, `UPDATE devices SET last_seen = ? WHERE id = ?`, now, device)
		return err
	})
	if err != nil {
		return store.Result{}, store.Unavailable("ingest batch", err)
	}
	return store.Tally(rs, fates), nil
}

// storedKeys returns what is stored under the keys of rs[first]: per
// stream one primary-key range query when the batch's seqs are dense (the
// usual case: a batch is a run of a stream), one probe per key otherwise.
func (s *SQLite) storedKeys(ctx context.Context, tx *sql.Tx, device string, rs []reading.Reading, first []int) (map[store.Key]reading.Reading, error) {
	type span struct{ lo, hi, n uint64 }
	spans := map[reading.StreamID]*span{}
	for _, i := range first {
		r := &rs[i]
		sp := spans[r.Stream]
		if sp == nil {
			sp = &span{lo: r.Seq, hi: r.Seq}
			spans[r.Stream] = sp
		}
		sp.lo, sp.hi, sp.n = min(sp.lo, r.Seq), max(sp.hi, r.Seq), sp.n+1
	}
	out := map[store.Key]reading.Reading{}
	scan := func(stream reading.StreamID, rows *sql.Rows) error {
		defer rows.Close()
		for rows.Next() {
			var seq, ts int64
			var st reading.Reading
			if err := rows.Scan(&seq, &st.Sensor, &ts, &st.Value, &st.Unit, &st.Unsynced); err != nil {
				return err
			}
			st.Time = fromMicros(ts)
			out[store.Key{Stream: stream, Seq: uint64(seq)}] = st
		}
		return rows.Err()
	}
	const cols = `SELECT seq, sensor, ts, value, unit, unsynced FROM readings WHERE device_id = ? AND stream = ? `
	for stream, sp := range spans {
		if sp.hi-sp.lo < 4*sp.n {
			rows, err := s.txQuery(ctx, tx, cols+`AND seq BETWEEN ? AND ?`, device, int64(stream), int64(sp.lo), int64(sp.hi))
			if err != nil {
				return nil, err
			}
			if err := scan(stream, rows); err != nil {
				return nil, err
			}
			continue
		}
		for _, i := range first {
			if rs[i].Stream != stream {
				continue
			}
			rows, err := s.txQuery(ctx, tx, cols+`AND seq = ?`, device, int64(stream), int64(rs[i].Seq))
			if err != nil {
				return nil, err
			}
			if err := scan(stream, rows); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func labelsJSON(m map[string]string) (any, error) {
	if len(m) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode labels: %w", err)
	}
	return string(b), nil
}

// authenticateSQL finds the device of a token: its current one, or one
// it had before a rotation whose grace has not ended (?2, now).
const authenticateSQL = `SELECT d.id, t.hash, d.revoked_at FROM (
		SELECT id AS device_id, token_hash AS hash FROM devices WHERE token_hash = ?1
		UNION ALL
		SELECT device_id, token_hash FROM previous_tokens WHERE token_hash = ?1 AND expires_at > ?2
	) AS t JOIN devices d ON d.id = t.device_id LIMIT 1`

// Authenticate returns the device whose token hashes to tokenHash.
func (s *SQLite) Authenticate(ctx context.Context, tokenHash []byte) (string, error) {
	var id string
	var stored []byte
	var revoked sql.NullInt64
	st, err := s.stmt(ctx, authenticateSQL)
	if err == nil {
		err = st.QueryRowContext(ctx, tokenHash, micros(time.Now())).Scan(&id, &stored, &revoked)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return "", store.ErrUnknownToken
	}
	if err != nil {
		return "", store.Unavailable("authenticate", err)
	}
	if !store.HashesEqual(stored, tokenHash) {
		return "", store.ErrUnknownToken
	}
	if revoked.Valid {
		return "", store.ErrRevoked
	}
	return id, nil
}

// CheckDevice reports whether the device is registered and not revoked.
func (s *SQLite) CheckDevice(ctx context.Context, id string) error {
	var revoked sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT revoked_at FROM devices WHERE id = ?`, id).Scan(&revoked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.ErrUnknownDevice
	case err != nil:
		return store.Unavailable("check device", err)
	case revoked.Valid:
		return store.ErrRevoked
	}
	return nil
}

// DevicesGeneration returns the counter that every change of a device's
// registration increases (triggers on devices, migration 0004).
func (s *SQLite) DevicesGeneration(ctx context.Context) (int64, error) {
	var g int64
	if err := s.db.QueryRowContext(ctx, `SELECT generation FROM device_generation`).Scan(&g); err != nil {
		return 0, store.Unavailable("read device generation", err)
	}
	return g, nil
}

// RotateToken gives the device a new token; see store.Store.
func (s *SQLite) RotateToken(ctx context.Context, id string, tokenHash []byte, grace time.Duration, at time.Time) error {
	if err := s.mu.LockContext(ctx); err != nil {
		return store.Unavailable("rotate token", err)
	}
	defer s.mu.Unlock()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var old []byte
		var revoked sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT token_hash, revoked_at FROM devices WHERE id = ?`, id).Scan(&old, &revoked)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %s", store.ErrUnknownDevice, id)
		}
		if err != nil {
			return err
		}
		// A revoked device's old tokens stay dead; expired ones go.
		if _, err := tx.ExecContext(ctx, `DELETE FROM previous_tokens WHERE device_id = ? AND (expires_at <= ? OR ?)`,
			id, micros(at), revoked.Valid); err != nil {
			return err
		}
		if !revoked.Valid && grace > 0 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO previous_tokens (token_hash, device_id, expires_at) VALUES (?, ?, ?)`,
				old, id, micros(at.Add(grace))); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE devices SET token_hash = ?, revoked_at = NULL WHERE id = ?`, tokenHash, id)
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

// SaveStatus keeps status as the device's last heartbeat.
func (s *SQLite) SaveStatus(ctx context.Context, device string, status []byte, at time.Time) error {
	if err := s.mu.LockContext(ctx); err != nil {
		return store.Unavailable("save status", err)
	}
	defer s.mu.Unlock()
	dl, _ := store.StatusDeadLetters(status)
	_, err := s.db.ExecContext(ctx, `UPDATE devices SET last_status = ?, last_status_at = ?, last_seen = ?,
		dead_letter_ranges = coalesce(?, dead_letter_ranges) WHERE id = ?`,
		string(status), micros(at), micros(at), dl, device)
	if err != nil {
		return store.Unavailable("save status", err)
	}
	return nil
}

// AddDevice registers a device with the hash of its token.
func (s *SQLite) AddDevice(ctx context.Context, id string, tokenHash []byte, at time.Time) error {
	if err := s.mu.LockContext(ctx); err != nil {
		return store.Unavailable("add device", err)
	}
	defer s.mu.Unlock()
	_, err := s.db.ExecContext(ctx, `INSERT INTO devices (id, token_hash, created_at) VALUES (?, ?, ?)`, id, tokenHash, micros(at))
	var se *sqlite.Error
	if errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
		return fmt.Errorf("%w: %s", store.ErrDeviceExists, id)
	}
	if err != nil {
		return store.Unavailable("add device", err)
	}
	return nil
}

// RevokeDevice revokes the device's token.
func (s *SQLite) RevokeDevice(ctx context.Context, id string, at time.Time) error {
	if err := s.mu.LockContext(ctx); err != nil {
		return store.Unavailable("revoke device", err)
	}
	defer s.mu.Unlock()
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE devices SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?`, micros(at), id)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		_, err = tx.ExecContext(ctx, `DELETE FROM previous_tokens WHERE device_id = ?`, id)
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

// DeleteReceivedBefore deletes at most limit readings received before t.
// Its first call creates the index on received_at that it needs: the
// index costs every insert, so only a receiver with retention pays it.
func (s *SQLite) DeleteReceivedBefore(ctx context.Context, t time.Time, limit int) (int64, error) {
	if err := s.mu.LockContext(ctx); err != nil {
		return 0, store.Unavailable("delete old readings", err)
	}
	defer s.mu.Unlock()
	if !s.receivedIndex {
		if _, err := s.db.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS readings_received_at ON readings (received_at)`); err != nil {
			return 0, store.Unavailable("create index for retention", err)
		}
		s.receivedIndex = true
	}
	res, err := s.db.ExecContext(ctx, `DELETE FROM readings WHERE (device_id, stream, seq) IN (
		SELECT device_id, stream, seq FROM readings WHERE received_at < ? LIMIT ?)`, micros(t), limit)
	if err != nil {
		return 0, store.Unavailable("delete old readings", err)
	}
	n, err := res.RowsAffected()
	return n, store.Unavailable("delete old readings", err)
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func nullTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

// Devices lists the devices with their stream accounting.
func (s *SQLite) Devices(ctx context.Context) ([]store.Device, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, created_at, revoked_at, last_seen, last_status, last_status_at FROM devices ORDER BY id`)
	if err != nil {
		return nil, store.Unavailable("list devices", err)
	}
	var out []store.Device
	for rows.Next() {
		var d store.Device
		var created int64
		var revoked, seen, statusAt sql.NullInt64
		var status sql.NullString
		if err := rows.Scan(&d.ID, &created, &revoked, &seen, &status, &statusAt); err != nil {
			rows.Close()
			return nil, store.Unavailable("list devices", err)
		}
		d.Created = fromMicros(created)
		d.Revoked, d.LastSeen, d.LastStatusAt = nullTime(revoked), nullTime(seen), nullTime(statusAt)
		if status.Valid {
			d.LastStatus = json.RawMessage(status.String)
			d.Clock = store.HeartbeatClock(d.LastStatus)
		}
		out = append(out, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, store.Unavailable("list devices", err)
	}
	for i := range out {
		sums, err := s.streamSummaries(ctx, out[i].ID)
		if err != nil {
			return nil, err
		}
		out[i].Streams = sums
	}
	return out, nil
}

func (s *SQLite) streamSummaries(ctx context.Context, device string) ([]store.StreamSummary, error) {
	dropped, err := s.droppedRanges(ctx, device)
	if err != nil {
		return nil, err
	}
	dead, err := s.deadLettered(ctx, device)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT stream, highest_seq, received, conflicts, corrected FROM streams
		WHERE device_id = ? ORDER BY first_received_at, stream`, device)
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

func (s *SQLite) droppedRanges(ctx context.Context, device string) (map[reading.StreamID][][2]uint64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT stream, seq_from, seq_to FROM dropped_ranges WHERE device_id = ? ORDER BY stream, seq_from`, device)
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

// Latest returns the newest reading of each sensor of the device.
func (s *SQLite) Latest(ctx context.Context, device string) ([]store.Stored, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT stream, seq, sensor, ts, value, unit, labels, unsynced, received_at FROM (
		SELECT *, row_number() OVER (PARTITION BY sensor ORDER BY ts DESC, seq DESC) AS rn
		FROM readings WHERE device_id = ?) WHERE rn = 1 ORDER BY sensor`, device)
	if err != nil {
		return nil, store.Unavailable("latest readings", err)
	}
	defer rows.Close()
	out := []store.Stored{}
	for rows.Next() {
		st, err := scanSQLiteReading(rows, device)
		if err != nil {
			return nil, store.Unavailable("latest readings", err)
		}
		out = append(out, st)
	}
	return out, store.Unavailable("latest readings", rows.Err())
}

func scanSQLiteReading(rows *sql.Rows, device string) (store.Stored, error) {
	var st store.Stored
	var stream, seq, ts, recv int64
	var labels sql.NullString
	if err := rows.Scan(&stream, &seq, &st.Sensor, &ts, &st.Value, &st.Unit, &labels, &st.Unsynced, &recv); err != nil {
		return st, err
	}
	st.Device, st.Stream, st.Seq = device, reading.StreamID(stream), uint64(seq)
	st.Time, st.ReceivedAt = fromMicros(ts), fromMicros(recv)
	if labels.Valid {
		if err := json.Unmarshal([]byte(labels.String), &st.Labels); err != nil {
			return st, fmt.Errorf("stored labels of %s/%s/%d: %w", device, st.Stream, st.Seq, err)
		}
	}
	return st, nil
}

// Gaps returns what never arrived of each stream of the device.
func (s *SQLite) Gaps(ctx context.Context, device string) ([]store.StreamGaps, error) {
	dropped, err := s.droppedRanges(ctx, device)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, store.IslandsSQL("?"), device)
	if err != nil {
		return nil, store.Unavailable("find gaps", err)
	}
	defer rows.Close()
	is, err := store.ScanIslands(rows)
	if err != nil {
		return nil, store.Unavailable("find gaps", err)
	}
	dead, err := s.deadLettered(ctx, device)
	if err != nil {
		return nil, err
	}
	conflicts, err := s.conflictRows(ctx, device)
	if err != nil {
		return nil, err
	}
	return store.BuildGaps(is, dropped, dead, conflicts), nil
}

// Readings calls fn for each reading of q, in device time order.
func (s *SQLite) Readings(ctx context.Context, q store.Query, fn func(*store.Stored) error) error {
	sqlText := `SELECT stream, seq, sensor, ts, value, unit, labels, unsynced, received_at FROM readings WHERE device_id = ?`
	args := []any{q.Device}
	if q.Sensor != "" {
		sqlText += ` AND sensor = ?`
		args = append(args, q.Sensor)
	}
	if !q.From.IsZero() {
		sqlText += ` AND ts >= ?`
		args = append(args, micros(q.From))
	}
	if !q.To.IsZero() {
		sqlText += ` AND ts < ?`
		args = append(args, micros(q.To))
	}
	if q.Clock != store.ClockAll {
		sqlText += ` AND unsynced = ?`
		args = append(args, q.Clock == store.ClockUnsynced)
	}
	sqlText += ` ORDER BY ts, stream, seq`
	rows, err := s.db.QueryContext(ctx, sqlText, args...)
	if err != nil {
		return store.Unavailable("query readings", err)
	}
	defer rows.Close()
	for rows.Next() {
		st, err := scanSQLiteReading(rows, q.Device)
		if err != nil {
			return store.Unavailable("query readings", err)
		}
		if err := fn(&st); err != nil {
			return err
		}
	}
	return store.Unavailable("query readings", rows.Err())
}

// Reject keeps a message that can never be stored.
func (s *SQLite) Reject(ctx context.Context, m store.Rejected) error {
	if err := s.mu.LockContext(ctx); err != nil {
		return store.Unavailable("keep rejected message", err)
	}
	defer s.mu.Unlock()
	m = m.Kept()
	_, err := s.db.ExecContext(ctx, `INSERT INTO rejected_messages (topic, device_id, error, line, payload, payload_size, payload_sha256, received_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, m.Topic, m.Device, m.Err, m.Line, m.Payload, m.Size, m.SHA256, micros(m.ReceivedAt))
	return store.Unavailable("keep rejected message", err)
}

// deadLettered returns the ranges the device last reported dead-lettered.
func (s *SQLite) deadLettered(ctx context.Context, device string) (map[reading.StreamID][][2]uint64, error) {
	var raw sql.NullString
	err := s.db.QueryRowContext(ctx, `SELECT dead_letter_ranges FROM devices WHERE id = ?`, device).Scan(&raw)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, store.Unavailable("read dead-letter ranges", err)
	}
	return store.DeadLetterRanges([]byte(raw.String)), nil
}

// conflictRows returns the device's newest conflicts, per stream.
func (s *SQLite) conflictRows(ctx context.Context, device string) (map[reading.StreamID][]store.Conflict, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT stream, seq, sensor, ts, value, unit, unsynced, received_at,
		stored_sensor, stored_ts, stored_value, stored_unit, stored_unsynced
		FROM conflicts WHERE device_id = ? ORDER BY id DESC LIMIT ?`, device, store.MaxConflictsShown)
	if err != nil {
		return nil, store.Unavailable("list conflicts", err)
	}
	defer rows.Close()
	out := map[reading.StreamID][]store.Conflict{}
	for rows.Next() {
		var stream, seq, ts, recv int64
		var c store.Conflict
		var unsynced bool
		var ss, su sql.NullString
		var sts sql.NullInt64
		var sv sql.NullFloat64
		var sunsynced sql.NullBool
		if err := rows.Scan(&stream, &seq, &c.Received.Sensor, &ts, &c.Received.Value, &c.Received.Unit, &unsynced, &recv,
			&ss, &sts, &sv, &su, &sunsynced); err != nil {
			return nil, store.Unavailable("list conflicts", err)
		}
		c.Seq, c.ReceivedAt = uint64(seq), fromMicros(recv)
		c.Received.Timestamp, c.Received.Clock = fromMicros(ts), store.ClockOf(unsynced)
		if ss.Valid && sts.Valid && sv.Valid && su.Valid && sunsynced.Valid {
			c.Stored = &store.ConflictVersion{Sensor: ss.String, Value: sv.Float64, Unit: su.String, Timestamp: fromMicros(sts.Int64), Clock: store.ClockOf(sunsynced.Bool)}
		}
		out[reading.StreamID(stream)] = append(out[reading.StreamID(stream)], c)
	}
	return out, store.Unavailable("list conflicts", rows.Err())
}

// Interface guard.
var _ store.Store = (*SQLite)(nil)
