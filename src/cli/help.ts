// The text of `smq --help` and `smq peer --help`.
import { DEFAULT_SIZE, DEFAULT_TTL, MAX_SIZE } from './args.ts'
import { MAX_HEX_BYTES } from './payload.ts'

export const mainHelp = `Usage: smq <command> [options]

A command-line snakeMQ peer, for trying things by hand and for interop checks.
It speaks snakeMQ 1.6's wire protocol, so it talks to Python snakeMQ peers too.

Commands:
  peer      run one messaging peer: listen, connect, send, echo, and print
            every event as one JSON object per line (see 'smq peer --help')

Options:
  -h, --help    show this help

Examples:
  # bob listens on 127.0.0.1:4000 and echoes whatever arrives
  npx smq peer --ident bob --listen 4000 --echo

  # alice connects, sends bob 3 messages and waits for the 3 echoes
  npx smq peer --ident alice --connect 127.0.0.1:4000 --send-to bob --count 3 --expect 3 --timeout 10

  # 100,000 messages with a progress line a second, and only start and done on stdout
  npx smq peer --ident alice --connect 127.0.0.1:4000 --send-to bob --count 100000 --expect 100000 --quiet --progress

Exit codes: 0 every expectation met, 1 unmet at --timeout (or a failure),
2 usage error.
`

export const peerHelp = `Usage: smq peer --ident NAME [--listen [HOST:]PORT]... [--connect HOST:PORT]...
                [--send-to IDENT] [--count N] [--size BYTES | --data TEXT]
                [--ttl SECONDS] [--persistent] [--store DIR] [--expect N] [--echo]
                [--timeout SECONDS] [--keepalive SECONDS]
                [--tls-cert FILE --tls-key FILE] [--tls-ca FILE] [--tls-identity]
                [--throttle BYTES_PER_SECOND] [--quiet] [--progress]

Runs one snakeMQ peer. It listens and connects as told (connectors reconnect by
themselves), sends --count messages to --send-to, echoes what it receives with
--echo, and prints every event as one JSON object per line on stdout (with
--quiet only start and done). Notes for people go to stderr.

Peer:
  --ident NAME          this peer's identity, 1 to 50 characters (required)
                          e.g. --ident bob
  --listen [HOST:]PORT  accept connections here; repeatable. A bare PORT means
                        127.0.0.1; 0 picks a free port (the start event shows it)
                          e.g. --listen 4000   --listen 0.0.0.0:4000   --listen [::1]:0
  --connect HOST:PORT   keep a connection to this address, reconnecting after any
                        loss; repeatable
                          e.g. --connect 127.0.0.1:4000 --connect localhost:4001
  --keepalive SECONDS   ping a connection silent for SECONDS and close it if nothing
                        comes back within another SECONDS (default 10, the
                        library's; it cannot be turned off here)
                          e.g. --keepalive 5
  --throttle BYTES_PER_SECOND
                        limit the bytes this peer writes to each connection
                        (default: no limit)
                          e.g. --throttle 10000   (about 10 kB/s, as in the tutorial)

Sending:
  --send-to IDENT       queue messages for the peer IDENT; they go out whenever it
                        is connected
                          e.g. --send-to alice
  --count N             how many messages to send (default 1)
                          e.g. --count 1000
  --size BYTES          size of each generated message (default ${DEFAULT_SIZE}, at most ${MAX_SIZE}).
                        Message i (from 0) is the 4-byte big-endian i, then bytes
                        (i + j) % 256 for j = 0, 1, ..., cut to BYTES
                          e.g. --size 100
  --data TEXT           send TEXT (UTF-8) as every message instead
                          e.g. --data hello   (text starting with '-': --data=-x)
  --ttl SECONDS         how long a message may wait while IDENT is disconnected
                        (default ${DEFAULT_TTL}; 0: only if connected now; negative: no TTL)
                          e.g. --ttl 30   --ttl -1
  --persistent          mark the messages persistent: with --store they are kept
                        on disk until delivered
                          e.g. --persistent --store ./bob.db
  --store DIR           keep persistent messages in a LevelDB store in DIR.
                        Messages left there by an earlier run are loaded and sent,
                        and count as messages to deliver
                          e.g. --store /tmp/bob-queue

Receiving:
  --expect N            done once N messages have been received
                          e.g. --expect 1000
  --echo                send every received message back to its sender: same
                        data, TTL and persistent flag, new UUID
                          e.g. --echo

Ending:
  --timeout SECONDS     give up after SECONDS: exit 1 if an expectation is still
                        unmet, else 0 (default: run until every expectation is
                        met, or until SIGINT/SIGTERM when there are none)
                          e.g. --timeout 30

Output:
  -q, --quiet           print only the start and done events on stdout, not a
                        line per message sent or received; errors go to stderr
                          e.g. --quiet
  --progress            print a line a second on stderr: seconds since start,
                        messages sent, delivered and received, messages per second
                        (delivered plus received) over that second, and how many
                        wait in the queues
                          e.g. --progress

TLS:
  --tls-cert FILE       this peer's certificate (PEM); with --tls-key, needed to listen
  --tls-key FILE        its private key (PEM)
  --tls-ca FILE         CA certificate (PEM): the remote's certificate is then
                        required and verified against it (host names are not checked)
                          e.g. --tls-cert bob.crt --tls-key bob.key --tls-ca root.crt
  --tls-identity        accept a remote only under an identity its certificate
                        names (subject CN or a DNS subjectAltName); needs --tls-ca.
                        Without it, as in snakeMQ, any remote may claim any name
                          e.g. --tls-ca root.crt --tls-identity

  -h, --help            show this help

The peer is done, and exits 0, once every expectation is met: --expect messages
received, every message it had to send (including any loaded from --store)
delivered, and every echo delivered. Delivered means acknowledged by the
receiver (a plain snakeMQ 1.6 peer: written to its socket). A dropped message
is never delivered, so a peer that dropped one ends at --timeout with exit 1.
Without expectations it runs until --timeout and exits 0. Usage errors exit 2.

Output, one JSON object per line on stdout:
  {"event":"start","ident":..,"pid":..,"listen":["127.0.0.1:4000"],"connect":[..]}
  {"event":"connect","ident":..}            a peer completed the handshake
  {"event":"disconnect","ident":..}         its connection ended
  {"event":"recv","from":..,"uuid":"<hex>","ttl":<seconds or null>,"flags":..,"len":..,"data_hex":".."}
                                            "sha256" instead of "data_hex" when len > ${MAX_HEX_BYTES}
  {"event":"queued","to":..,"count":..,"seconds":..}
                                            the --send-to messages are all queued
  {"event":"delivered","to":..,"uuid":..}   a message (own, echo, or from the store)
  {"event":"drop","to":..,"uuid":..}        a message expired or could not be sent
  {"event":"error","error":..}              a connection failed (it is retried)
  {"event":"done","ok":..,"received":..,"sent":..,"delivered":..,"elapsed":..,"rate":..,"reason":..}
                                            always last; "sent" counts the messages
                                            queued by this run (own and echoes),
                                            "delivered" those seen delivered (with
                                            any from --store), "elapsed" the seconds
                                            since the peer started, "rate" received
                                            plus delivered per second of elapsed
With --quiet only start and done are printed.

On stderr, lines starting with 'smq: ': usage errors; a connector that cannot
connect (at the first failure, when the reason changes, at most every 10 s while
it goes on, and at the end if it never connected), with the address, the number
of attempts and the error; --progress lines; and with --quiet the errors.

Example, two terminals:
  npx smq peer --ident bob --listen 4000 --echo
  npx smq peer --ident alice --connect 127.0.0.1:4000 --send-to bob --count 1000 --size 100 --expect 1000 --timeout 30
`
