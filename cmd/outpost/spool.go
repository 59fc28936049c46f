package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/outpost-iot/outpost/daemon"
	"github.com/outpost-iot/outpost/daemon/config"
)

// stdin is what `outpost import -` reads; tests replace it.
var stdin io.Reader = os.Stdin

// openSpool loads the config and reaches the spool: through the running
// daemon, or the file when none runs.
func openSpool(ctx context.Context, path string) (*daemon.SpoolClient, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	return daemon.OpenSpoolClient(ctx, cfg)
}

// runSpool is `outpost spool stats|peek|export|dead|resend|purge|salvage`.
func runSpool(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: want outpost spool stats|peek|export|dead|resend|purge|salvage", errUsage)
	}
	sub, args := args[0], args[1:]
	nargs := map[string]int{"stats": 0, "peek": 0, "export": 0, "dead": 0, "resend": 2, "purge": 2, "salvage": 1}
	n, ok := nargs[sub]
	if !ok {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: unknown spool command %q", errUsage, sub)
	}
	var asJSON bool
	var limit int
	path, pos, err := commandArgs("spool "+sub, args, n, stderr, func(fs *flag.FlagSet) {
		if sub == "stats" || sub == "dead" {
			fs.BoolVar(&asJSON, "json", false, "print JSON")
		}
		if sub == "peek" {
			fs.IntVar(&limit, "n", 10, "how many of the oldest readings")
		}
	})
	if err != nil {
		return err
	}
	var from uint64
	if n == 2 {
		if from, err = strconv.ParseUint(pos[1], 10, 64); err != nil {
			return fmt.Errorf("%w: FROM %q is not a seq", errUsage, pos[1])
		}
	}
	c, err := openSpool(ctx, path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := c.Close(ctx); err == nil {
			err = cerr
		}
	}()
	switch sub {
	case "stats":
		st, err := c.Stats(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return json.NewEncoder(stdout).Encode(st)
		}
		fmt.Fprintf(stdout, "spool %s (via %s)\nstream %s, seq %d\n%d readings unsent (%d bytes), oldest %ds\ndropped %d, dead-lettered %d, quarantined %d\n",
			st.Path, c.Via(), st.Stream, st.Seq, st.Readings, st.Bytes, st.OldestUnsentS, st.Dropped, st.DeadLetter, st.Quarantined)
		return nil
	case "peek":
		return c.Export(ctx, stdout, max(limit, 1), false)
	case "export":
		return c.Export(ctx, stdout, 0, true)
	case "dead":
		dls, err := c.Dead(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return json.NewEncoder(stdout).Encode(dls)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "STREAM\tFROM\tTO\tREADINGS\tWHEN\tREASON")
		for _, d := range dls {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", d.Stream, d.From, d.To, d.Count, d.Time.Format("2006-01-02 15:04:05Z"), strings.ReplaceAll(d.Reason, "\n", " "))
		}
		return tw.Flush()
	case "resend":
		if err := c.Resend(ctx, pos[0], from); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "dead letters of stream %s from %d will be sent again\n", pos[0], from)
	case "purge":
		if err := c.Purge(ctx, pos[0], from); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "dead letters of stream %s from %d purged; the range is reported upstream as dropped\n", pos[0], from)
	case "salvage":
		rep, err := c.Salvage(ctx, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "salvaged %d readings of %d stream(s) from %s (%d already present, %d dropped ranges carried over)\n",
			rep.Readings, rep.Streams, pos[0], rep.Present, rep.Ranges)
		for _, p := range rep.Problems {
			fmt.Fprintln(stdout, "  problem:", p)
		}
	}
	return nil
}

// runImport is `outpost import FILE|-`: NDJSON readings from an offline
// instrument (sensor, value, timestamp; unit and labels optional) go into
// the spool with this device's stream and new seqs.
func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	path, pos, err := commandArgs("import", args, 1, stderr, nil)
	if err != nil {
		return err
	}
	in := stdin
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	c, err := openSpool(ctx, path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := c.Close(ctx); err == nil {
			err = cerr
		}
	}()
	res, err := c.Import(ctx, in)
	for _, e := range res.Errors {
		fmt.Fprintln(stderr, "import:", e)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %d readings (seq %d–%d)\n", res.Imported, res.FirstSeq, res.LastSeq)
	if len(res.Errors) > 0 {
		return fmt.Errorf("some lines were not imported (see above); the others were")
	}
	return nil
}
