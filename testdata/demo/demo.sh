#!/bin/bash
# make demo: the receiver on its embedded SQLite store and the edge daemon
# with simulated sensors and the HTTP uplink, both in ./var/demo, until
# Ctrl-C. Run from the repository root after `make build`.
set -euo pipefail

DIR=${DEMO_DIR:-var/demo}
PORT=${DEMO_PORT:-18080}
BIN=${BIN:-bin}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
	say "port $PORT is taken; run with DEMO_PORT=<another port>"
	exit 1
fi

DB="sqlite:$DIR/receiver.db"
if [ ! -s "$DIR/token" ]; then
	umask 077
	"$BIN/outpost-receiver" device add demo-pi --database-url "$DB" >"$DIR/token"
	head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/admin-token"
	umask 022
	say "registered device demo-pi; its token is in $DIR/token"
fi

sed -e "s#DIR#$DIR#g" -e "s#PORT#$PORT#g" testdata/demo/outpost.yaml >"$DIR/outpost.yaml"

"$BIN/outpost-receiver" serve --listen "127.0.0.1:$PORT" --database-url "$DB" \
	--admin-token-file "$DIR/admin-token" 2>"$DIR/receiver.log" &
RECEIVER=$!
"$BIN/outpost" daemon --config "$DIR/outpost.yaml" 2>"$DIR/outpost.log" &
DAEMON=$!

stop() {
	trap - INT TERM EXIT
	say "stopping the daemon (SIGTERM commits what is pending) and the receiver"
	kill -CONT "$RECEIVER" 2>/dev/null || true
	kill -TERM "$DAEMON" 2>/dev/null || true
	wait "$DAEMON" 2>/dev/null || true
	kill -TERM "$RECEIVER" 2>/dev/null || true
	wait "$RECEIVER" 2>/dev/null || true
	say "stopped. Logs: $DIR/outpost.log, $DIR/receiver.log; the data stays in $DIR"
}
trap stop INT TERM EXIT

say "receiver on http://127.0.0.1:$PORT (pid $RECEIVER), SQLite at $DIR/receiver.db"
say "daemon (pid $DAEMON): 4 simulated series every 500ms, spool at $DIR/spool.db"
say "cut the link:     kill -STOP $RECEIVER   (the backlog builds in the spool)"
say "restore it:       kill -CONT $RECEIVER   (the backlog drains, oldest first)"
say "look inside:      $BIN/outpost status --config $DIR/outpost.yaml"
say "what was stored:  curl -s -H \"Authorization: Bearer \$(cat $DIR/admin-token)\" http://127.0.0.1:$PORT/v1/devices"
say "Ctrl-C stops both."

while kill -0 "$DAEMON" 2>/dev/null; do
	sleep 5
	echo
	"$BIN/outpost" status --config "$DIR/outpost.yaml" || true
	stored=$(curl -s --max-time 2 -H "Authorization: Bearer $(cat "$DIR/admin-token")" \
		"http://127.0.0.1:$PORT/v1/devices" 2>/dev/null | grep -o '"highest_seq":[0-9]*' | head -1 || true)
	[ -n "$stored" ] && echo "receiver  ${stored/\"highest_seq\":/highest seq stored: }"
done
say "the daemon exited; see $DIR/outpost.log"
