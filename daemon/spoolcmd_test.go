package daemon

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/daemon/config"
	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool"
)

const importInput = `{"sensor":"logger.temp","value":12.5,"unit":"C","timestamp":"2026-11-20T08:00:00Z"}
{"sensor":"logger.temp","timestamp":"2026-11-20T08:10:00Z"}
{"sensor":"logger.temp","value":12.7,"unit":"C","timestamp":"2026-11-20T08:20:00+01:00","labels":{"site":"north"}}
{"sensor":"logger.temp","value":13,"timestamp":"yesterday"}
{"device":"ignored","stream":"0000000000000001","seq":99,"sensor":"logger.rh","value":81,"unit":"%","timestamp":"2026-11-20T08:30:00Z","clock":"unsynced"}
`

func decodeExport(t *testing.T, b []byte) []reading.Line {
	t.Helper()
	dec := reading.NewDecoder(bytes.NewReader(b), reading.Limits{})
	var out []reading.Line
	for {
		var l reading.Line
		err := dec.Decode(&l)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("export is not valid wire NDJSON: %v\n%s", err, b)
		}
		out = append(out, l)
	}
}

func checkImport(t *testing.T, c *SpoolClient) {
	t.Helper()
	ctx := context.Background()
	res, err := c.Import(ctx, strings.NewReader(importInput))
	if err != nil {
		t.Fatal(err)
	}
	if res.Imported != 3 || len(res.Errors) != 2 || !strings.Contains(res.Errors[0], `line 2: field "value": missing`) || !strings.Contains(res.Errors[1], `line 4: field "timestamp"`) {
		t.Fatalf("Import = %+v; want 3 imported, lines 2 and 4 named", res)
	}
	var out bytes.Buffer
	if err := c.Export(ctx, &out, 0, true); err != nil {
		t.Fatal(err)
	}
	var imported []reading.Reading
	for _, l := range decodeExport(t, out.Bytes()) {
		if strings.HasPrefix(l.Reading.Sensor, "logger.") {
			imported = append(imported, l.Reading)
		}
	}
	if len(imported) != 3 || imported[0].Value != 12.5 || imported[1].Labels["site"] != "north" ||
		!imported[1].Time.Equal(time.Date(2026, 11, 20, 7, 20, 0, 0, time.UTC)) || !imported[2].Unsynced ||
		imported[2].Device != "test-pi" || imported[2].Seq == 99 || imported[1].Seq+1 != imported[2].Seq {
		t.Errorf("exported imports = %+v; want the three good lines with this device's stream and consecutive seqs", imported)
	}
	out.Reset()
	if err := c.Export(ctx, &out, 2, false); err != nil {
		t.Fatal(err)
	}
	if n := len(decodeExport(t, out.Bytes())); n != 2 {
		t.Errorf("peek -n 2 printed %d lines", n)
	}
}

func TestSpoolCommandsThroughDaemon(t *testing.T) {
	d := startDaemon(t, `device: test-pi
spool: {path: SPOOL}
status: {socket: SOCKET}
`)
	waitStatus(t, d.socket(), func(Status) bool { return true })
	cfg, err := config.Load(d.config)
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenSpoolClient(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if c.Via() != "daemon" {
		t.Fatalf("with the daemon running the commands go via %q", c.Via())
	}
	checkImport(t, c)
	st, err := c.Stats(context.Background())
	if err != nil || st.Readings != 3 || st.Seq != 3 {
		t.Errorf("Stats = %+v, %v; want the 3 imported readings", st, err)
	}
}

func TestSpoolCommandsOnTheFile(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Defaults()
	cfg.Device = "test-pi"
	cfg.Spool.Path = filepath.Join(dir, "spool.db")
	cfg.Status.Socket = filepath.Join(dir, "none.sock")
	if _, err := OpenSpoolClient(context.Background(), &cfg); err == nil || !strings.Contains(err.Error(), "no spool at") {
		t.Fatalf("no daemon and no file: %v; want an error naming both", err)
	}
	// A spool with one dead-lettered batch, as the daemon would leave it.
	sp, err := spool.Open(spool.Options{Path: cfg.Spool.Path, Device: "test-pi"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		sp.Append(context.Background(), reading.Reading{Sensor: "s", Value: float64(i), Time: time.Now()}, 0)
	}
	sp.Flush(context.Background())
	b, _ := sp.Next(2, 1<<20)
	if err := sp.DeadLetter(context.Background(), b, "400 bad request: line 1"); err != nil {
		t.Fatal(err)
	}
	sp.Close(context.Background())

	c, err := OpenSpoolClient(context.Background(), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Via() != cfg.Spool.Path {
		t.Errorf("without a daemon the commands go via %q; want the file", c.Via())
	}
	// While this command holds the file, a second one is refused quickly
	// with a message, not left hanging.
	start := time.Now()
	if _, err := OpenSpoolClient(context.Background(), &cfg); err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("second open of a held spool = %v after %v; want an error within seconds", err, time.Since(start))
	}
	dls, err := c.Dead(context.Background())
	if err != nil || len(dls) != 1 || dls[0].From != 1 || dls[0].To != 2 || !strings.Contains(dls[0].Reason, "400") {
		t.Fatalf("Dead = %+v, %v; want seqs 1–2 with the reason", dls, err)
	}
	if err := c.Resend(context.Background(), dls[0].Stream, 1); err != nil {
		t.Fatal(err)
	}
	checkImport(t, c)
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	// What the commands did is in the file.
	sp, err = spool.Open(spool.Options{Path: cfg.Spool.Path, Device: "test-pi"})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close(context.Background())
	st, _ := sp.Stats()
	if dl, _ := sp.DeadLetters(); st.Readings != 8 || len(dl) != 0 {
		t.Errorf("after resend and import: %d readings, %d dead letters; want 8 and none", st.Readings, len(dl))
	}
}
