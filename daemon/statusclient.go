package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// FetchStatus asks the running daemon for its status over the socket. It
// returns the status and the JSON as the daemon sent it.
func FetchStatus(ctx context.Context, socket string) (Status, []byte, error) {
	client := socketClient(socket)
	client.Timeout = 10 * time.Second
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://outpost/v1/status", nil)
	if err != nil {
		return Status{}, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return Status{}, nil, fmt.Errorf("no daemon answers on %s (is it running? systemctl status outpost): %w", socket, unwrapOpError(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return Status{}, nil, fmt.Errorf("reading status: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return Status{}, nil, fmt.Errorf("status: %s", resp.Status)
	}
	var st Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return Status{}, nil, fmt.Errorf("status: %w", err)
	}
	return st, raw, nil
}

func unwrapOpError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err
	}
	return err
}

// WriteStatus prints the status for a person.
func WriteStatus(w io.Writer, st Status, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "device\t%s (outpost %s)\n", st.Device, st.Version)
	fmt.Fprintf(tw, "uptime\t%s, clock %s, boot %s\n", seconds(st.UptimeS), st.Clock, st.BootID)
	if st.Clock == "unsynced" {
		fmt.Fprintf(tw, "\tclock not synchronised: readings are flagged, and corrected if it syncs before a reboot\n")
	}
	sp := st.Spool
	fmt.Fprintf(tw, "spool\t%d readings (%s), oldest unsent %s, dropped %d, dead-lettered %d, quarantined %d\n",
		sp.Readings, size(sp.Bytes), seconds(sp.OldestUnsentS), sp.Dropped, sp.DeadLetter, sp.Quarantined)
	fmt.Fprintf(tw, "\t%s (%s on disk), stream %s\n", sp.Path, size(uint64(max(sp.FileBytes, 0))), sp.Stream)
	if sp.CommitFailing {
		fmt.Fprintf(tw, "\tcommits failing: %s\n", sp.LastCommitFail)
	}
	if sp.DiskFull {
		fmt.Fprintf(tw, "\tdisk full: the oldest readings make room (drop_oldest) or new ones are refused (reject_new, %d so far)\n", sp.Rejected)
	}
	u := st.Uplink
	last := "never"
	if u.LastSuccess != nil {
		last = seconds(int64(now.Sub(*u.LastSuccess).Seconds())) + " ago"
	}
	fmt.Fprintf(tw, "uplink\t%s: %s, last success %s, sent %d\n", u.Kind, u.State, last, u.Sent)
	if u.LastError != "" {
		hint := ""
		if u.Misconfigured {
			hint = " (likely a misconfiguration)"
		}
		fmt.Fprintf(tw, "\tlast error%s: %s\n", hint, u.LastError)
	}
	for _, dl := range st.DeadLetterRanges {
		fmt.Fprintf(tw, "dead\tstream %s: %s (outpost spool dead)\n", dl.Stream, ranges(dl.Ranges))
	}
	if len(st.Sensors) == 0 {
		fmt.Fprintf(tw, "sensors\tnone configured\n")
	}
	for i, s := range st.Sensors {
		label := ""
		if i == 0 {
			label = "sensors"
		}
		var vals []string
		for _, m := range s.Last {
			vals = append(vals, m.Name+"="+strconv.FormatFloat(m.Value, 'f', -1, 64)+m.Unit)
		}
		age := "-"
		if !s.LastTime.IsZero() {
			age = seconds(int64(now.Sub(s.LastTime).Seconds())) + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d errors\t%s\n", label, s.Name, s.State, age, s.Errors, strings.Join(vals, " "))
		if s.LastError != "" && s.State != "ok" {
			fmt.Fprintf(tw, "\t\tlast error: %s\n", s.LastError)
		}
	}
	return tw.Flush()
}

func seconds(s int64) string {
	return (time.Duration(s) * time.Second).String()
}

func size(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

func ranges(rs [][2]uint64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%d–%d", r[0], r[1])
	}
	return strings.Join(parts, ", ")
}
