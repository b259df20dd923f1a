#!/usr/bin/env bash
# Cache hits: itwin-proxy against a bare hyper server, nginx and Varnish, on one machine, in one
# run; then the instructions each hit costs, counted by callgrind.
#
# Starts the upstream simulator, itwin-proxy, a bare hyper server answering the same bytes from
# memory (bench/bare), nginx (proxy_cache as it is, proxy_cache + sub_filter rewriting the links
# as itwin-proxy does, and the page as a static file) and Varnish (the token in vcl_hash). Every
# cache is warmed and checked to serve a hit; then, for each round, each page and each contender
# in turn (interleaved, so machine noise falls on all alike), the same wrk load. HTTP/2 hits
# are measured with h2load. Last, callgrind counts the instructions per hit of itwin-proxy
# (request log off, then on) and of the bare server: N1 and then N2 hits over one keep-alive
# connection in two runs, each counted until its last hit is answered (before shutdown),
# (Ir(N2) - Ir(N1)) / (N2 - N1).
#
# Everything listens on 127.0.0.1; every process started here is stopped on exit. Missing tools
# are installed with apt-get. Also measured: gzip hits against identity hits, and itwin-proxy's
# start to ready time and idle memory. Tunables (environment), with their defaults:
#   PARTS="load gzip h2 callgrind startup"  which sections run
#   DURATION=5  ROUNDS=2       seconds per wrk / h2load run; rounds of the wrk section
#   CONNECTIONS=32  THREADS=1  wrk's -c and -t; h2load runs H2_CLIENTS x H2_STREAMS in flight
#   H2_CLIENTS=4  H2_STREAMS=8
#   SMALL_TOP=10  LARGE_TOP=1000   the two pages ($top of the connections list)
#   N1=200  N2=2200            hits per callgrind run
#   PORT_BASE=28080
set -euo pipefail

PARTS=${PARTS:-load gzip h2 callgrind startup}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-2}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
H2_CLIENTS=${H2_CLIENTS:-4}
H2_STREAMS=${H2_STREAMS:-8}
SMALL_TOP=${SMALL_TOP:-10}
LARGE_TOP=${LARGE_TOP:-1000}
N1=${N1:-200}
N2=${N2:-2200}
PORT_BASE=${PORT_BASE:-28080}

SIM_PORT=$PORT_BASE
PROXY_PORT=$((PORT_BASE + 1))
ADMIN_PORT=$((PORT_BASE + 2))
BARE_PORT=$((PORT_BASE + 3))
NGINX_PORT=$((PORT_BASE + 4))
NGINX_LINKS_PORT=$((PORT_BASE + 5))
NGINX_STATIC_PORT=$((PORT_BASE + 6))
NGINX_H2_PORT=$((PORT_BASE + 7))
VARNISH_PORT=$((PORT_BASE + 8))
CG_PORT=$((PORT_BASE + 9))
CG_ADMIN_PORT=$((PORT_BASE + 10))
LOGGED_PORT=$((PORT_BASE + 11))
LOGGED_ADMIN_PORT=$((PORT_BASE + 12))
IMODEL=5db42812-ebb8-4c58-98a4-2eaa99e0d8b6
# Every cache keeps the pages far longer than the run (a few minutes), so every measured
# request is a hit. Below 601 s, as with the default `cache.ttl` of 60 s, itwin-proxy's `Age`
# and `Cache-Status` values come premade.
TTL=600

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/itwin-proxy-bench.XXXXXX")
chmod 755 "$WORK"
PIDS=()
STARTED=$SECONDS

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
    echo "run.sh: $*" >&2
    for log in "$WORK"/*.log; do
        [[ -s $log ]] && { echo "--- $(basename "$log")" >&2; tail -n 20 "$log" >&2; }
    done
    exit 1
}

part() { [[ " $PARTS " == *" $1 "* ]]; }

# Waits (at most $2 s, default 10) until a URL answers at all.
wait_http() {
    local url=$1 tries=$((${2:-10} * 10)) i
    for ((i = 0; i < tries; i++)); do
        curl -s -o /dev/null --max-time 1 "$url" && return 0
        sleep 0.1
    done
    die "nothing answers at $url"
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

PAGE_QUERY="imodelId=$IMODEL&\$top=@TOP@"
page_path() { # top
    echo "/export/connections?${PAGE_QUERY/@TOP@/$1}"
}

# --- tools and binaries --------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v varnishd >/dev/null || [[ -x /usr/sbin/varnishd ]] || missing+=(varnish)
command -v valgrind >/dev/null || missing+=(valgrind)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    echo "installing ${missing[*]} ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >"$WORK/apt.log" 2>&1 || die "apt-get install ${missing[*]} failed"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
VARNISHD=$(command -v varnishd || echo /usr/sbin/varnishd)

echo "building release binaries ..."
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release --quiet --bin itwin-proxy --bin itwin-proxy-sim)
cargo build --release --quiet --manifest-path "$ROOT/bench/bare/Cargo.toml" \
    --target-dir "$TARGET/bench-bare"
BIN=$TARGET/release
BARE=$TARGET/bench-bare/release/bare-hyper
BUILT=$SECONDS

for port in $(seq "$PORT_BASE" "$LOGGED_ADMIN_PORT"); do
    port_free "$port" || die "port $port is in use (set PORT_BASE)"
done

# --- the upstream simulator ----------------------------------------------------------------
"$BIN/itwin-proxy-sim" --listen "127.0.0.1:$SIM_PORT" --secret bench \
    --imodel "$IMODEL:$LARGE_TOP" >"$WORK/sim.out" 2>"$WORK/sim.log" &
PIDS+=($!)
TOKEN=
for ((i = 0; i < 100; i++)); do
    TOKEN=$(grep -s -m1 -oE '^eyJ[A-Za-z0-9._-]+$' "$WORK/sim.out" || true)
    [[ -n $TOKEN ]] && break
    sleep 0.1
done
[[ -n $TOKEN ]] || die "the simulator printed no token"
AUTH="Authorization: Bearer $TOKEN"

# --- itwin-proxy -----------------------------------------------------------------------------
# The request log: off as nginx's `access_log off` (log.access where the build has the key,
# else a level above the request line's), or on as by default.
proxy_env() { # port admin_port log(off|on)
    local env=(
        ITWIN_PROXY__UPSTREAM__BASE_URL="http://127.0.0.1:$SIM_PORT"
        ITWIN_PROXY__SERVER__LISTEN="127.0.0.1:$1"
        ITWIN_PROXY__SERVER__PUBLIC_BASE_URL="http://127.0.0.1:$1"
        ITWIN_PROXY__SERVER__ADMIN_LISTEN="127.0.0.1:$2"
        ITWIN_PROXY__CACHE__TTL="${TTL}s"
        # Loopback only: no signing keys to fetch from the internet.
        ITWIN_PROXY__AUTH__ISSUER=
    )
    if [[ $3 == off ]]; then
        env+=(ITWIN_PROXY__LOG__LEVEL=warn)
        [[ $HAS_ACCESS == yes ]] && env+=(ITWIN_PROXY__LOG__ACCESS=false)
    else
        env+=(ITWIN_PROXY__LOG__LEVEL=info)
        [[ $HAS_ACCESS == yes ]] && env+=(ITWIN_PROXY__LOG__ACCESS=true)
    fi
    printf '%s\n' "${env[@]}"
}
HAS_ACCESS=no
"$BIN/itwin-proxy" --config "$ROOT/config/default.toml" --check-config 2>/dev/null |
    grep -q '^access *=' && HAS_ACCESS=yes
# Starts itwin-proxy on the bundled config, its output in a file, and waits until it is ready;
# sets STARTED_PID.
start_proxy() { # port admin_port log(off|on) log-file
    local env
    mapfile -t env < <(proxy_env "$1" "$2" "$3")
    env "${env[@]}" "$BIN/itwin-proxy" --config "$ROOT/config/default.toml" >"$4" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    wait_http "http://127.0.0.1:$2/readyz"
}
start_proxy "$PROXY_PORT" "$ADMIN_PORT" off "$WORK/proxy.log"
PROXY_PID=$STARTED_PID
# The same with its request log on (info, one line per request, written to a file).
start_proxy "$LOGGED_PORT" "$LOGGED_ADMIN_PORT" on "$WORK/proxy-logged.log"
LOGGED_PID=$STARTED_PID

# --- the pages, as itwin-proxy serves them, for the bare server and nginx's static files ----
# Fetches with exactly the headers wrk sends (so the same cache keys); saves headers and body;
# prints the status code.
fetch() { # url file-stem
    curl -s --max-time 10 -H "$AUTH" -H 'Accept:' -H 'User-Agent:' \
        -D "$2.head" -o "$2.body" -w '%{http_code}' "$1" || true
}
mkdir -p "$WORK/static"
for top in "$SMALL_TOP" "$LARGE_TOP"; do
    url="http://127.0.0.1:$PROXY_PORT$(page_path "$top")"
    [[ $(fetch "$url" "$WORK/page-$top-1") == 200 ]] || die "itwin-proxy: \$top=$top is not a 200"
    [[ $(fetch "$url" "$WORK/page-$top") == 200 ]] || die "itwin-proxy: \$top=$top is not a 200"
    cp "$WORK/page-$top.body" "$WORK/static/page-$top.json"
done

# --- the bare hyper server ------------------------------------------------------------------
# Asked the very request target itwin-proxy is asked, so that both parse the same request.
"$BARE" "127.0.0.1:$BARE_PORT" "$(page_path "$SMALL_TOP")=$WORK/static/page-$SMALL_TOP.json" \
    "$(page_path "$LARGE_TOP")=$WORK/static/page-$LARGE_TOP.json" >"$WORK/bare.log" 2>&1 &
BARE_PID=$!
PIDS+=("$BARE_PID")

# --- nginx -----------------------------------------------------------------------------------
# worker_processes auto: one worker per core, as itwin-proxy's runtime has one thread per core.
# As root, the workers drop to nobody, so they get the work directory.
NGINX_USER=
if ((EUID == 0)); then
    NGINX_USER="user nobody $(id -gn nobody);"
    chown -R nobody "$WORK"
fi
nginx_location() { # zone
    cat <<EOF
            proxy_pass http://sim;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache $1;
            # Per token, per page, per Accept and Prefer, like itwin-proxy's key.
            proxy_cache_key "\$http_authorization|\$http_accept|\$http_prefer|\$request_uri";
            proxy_cache_valid 200 ${TTL}s;
            proxy_cache_lock on;
            proxy_ignore_headers Cache-Control Expires Set-Cookie Vary;
            add_header X-Cache-Status \$upstream_cache_status;
EOF
}
cat >"$WORK/nginx.conf" <<EOF
$NGINX_USER
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    # As in Debian's shipped nginx.conf; keepalive_requests raised so that no wrk connection is
    # closed midway.
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    client_body_temp_path $WORK/nginx-body;
    proxy_temp_path $WORK/nginx-proxy;
    fastcgi_temp_path $WORK/nginx-fastcgi;
    uwsgi_temp_path $WORK/nginx-uwsgi;
    scgi_temp_path $WORK/nginx-scgi;
    proxy_cache_path $WORK/nginx-cache keys_zone=pages:10m max_size=256m inactive=1h use_temp_path=off;
    proxy_cache_path $WORK/nginx-cache-links keys_zone=links:10m max_size=256m inactive=1h use_temp_path=off;
    upstream sim {
        server 127.0.0.1:$SIM_PORT;
        keepalive 32;
    }
    # The cache as it is: the upstream's links are handed out unchanged.
    server {
        listen 127.0.0.1:$NGINX_PORT;
        listen 127.0.0.1:$NGINX_H2_PORT http2;
        location / {
$(nginx_location pages)
        }
    }
    # The cache plus sub_filter, rewriting the links as itwin-proxy does (on every hit: nginx
    # stores the upstream's bytes).
    server {
        listen 127.0.0.1:$NGINX_LINKS_PORT;
        location / {
$(nginx_location links)
            # sub_filter interleaves many small pieces per page; with sendfile and TCP_CORK
            # they stall.
            sendfile off;
            tcp_nopush off;
            proxy_set_header Accept-Encoding "";
            sub_filter_types application/json;
            sub_filter_once off;
            sub_filter "http://127.0.0.1:$SIM_PORT" "http://127.0.0.1:$NGINX_LINKS_PORT";
        }
    }
    # The page as a static file: the least work a web server can do for it.
    server {
        listen 127.0.0.1:$NGINX_STATIC_PORT;
        default_type application/json;
        root $WORK/static;
    }
}
EOF
"$NGINX" -t -q -p "$WORK/" -e "$WORK/nginx.log" -c "$WORK/nginx.conf" || die "bad nginx config"
"$NGINX" -p "$WORK/" -e "$WORK/nginx.log" -c "$WORK/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
PIDS+=("$NGINX_PID")

# --- Varnish ---------------------------------------------------------------------------------
# The builtin vcl_recv passes requests with an Authorization header: this one looks them up,
# keyed (vcl_hash) by the token, Accept and Prefer besides the builtin URL and host. It cannot
# rewrite bodies, so its links point at the upstream, as plain nginx's.
cat >"$WORK/bench.vcl" <<EOF
vcl 4.1;
backend sim { .host = "127.0.0.1"; .port = "$SIM_PORT"; }
sub vcl_recv {
    if (req.method != "GET" && req.method != "HEAD") { return (pass); }
    return (hash);
}
sub vcl_hash {
    hash_data(req.http.Authorization);
    hash_data(req.http.Accept);
    hash_data(req.http.Prefer);
}
sub vcl_backend_response {
    set beresp.ttl = ${TTL}s;
    set beresp.grace = 0s;
    unset beresp.http.Set-Cookie;
    return (deliver);
}
sub vcl_deliver {
    if (obj.hits > 0) { set resp.http.X-Cache = "HIT"; } else { set resp.http.X-Cache = "MISS"; }
}
EOF
# Two worker pools, as nginx has two workers; no jail, so it runs as this user in $WORK.
"$VARNISHD" -F -j none -n "$WORK/varnish" -a "127.0.0.1:$VARNISH_PORT" -f "$WORK/bench.vcl" \
    -s malloc,256m -p thread_pools=2 -p feature=+http2 >"$WORK/varnish.log" 2>&1 &
VARNISH_PID=$!
PIDS+=("$VARNISH_PID")

wait_http "http://127.0.0.1:$BARE_PORT/"
wait_http "http://127.0.0.1:$NGINX_PORT/"
wait_http "http://127.0.0.1:$VARNISH_PORT/" 30

# --- contenders: name port path-of(top) hit-header -----------------------------------------
declare -A PORT=([itwin-proxy]=$PROXY_PORT [itwin-proxy+log]=$LOGGED_PORT [bare-hyper]=$BARE_PORT [nginx]=$NGINX_PORT
    [nginx+links]=$NGINX_LINKS_PORT [nginx-static]=$NGINX_STATIC_PORT [varnish]=$VARNISH_PORT)
CONTENDERS=(itwin-proxy itwin-proxy+log bare-hyper nginx nginx+links nginx-static varnish)
url_of() { # contender top [port]
    local port=${3:-${PORT[$1]}}
    case $1 in
    # The static file with the page's query (which nginx ignores), so the request is as long.
    nginx-static) echo "http://127.0.0.1:$port/page-$2.json?${PAGE_QUERY/@TOP@/$2}" ;;
    *) echo "http://127.0.0.1:$port$(page_path "$2")" ;;
    esac
}
# The body with the origin its server wrote into the links replaced, for comparing.
normalized() { # contender file
    local origin="http://127.0.0.1:${PORT[$1]}"
    case $1 in
    nginx | varnish) origin="http://127.0.0.1:$SIM_PORT" ;;
    bare-hyper | nginx-static) origin="http://127.0.0.1:$PROXY_PORT" ;;
    esac
    sed "s#$origin#ORIGIN#g" "$2"
}
# Warms each contender's copy of the page: the second answer must be a 200 hit, and every body
# the same as itwin-proxy's once the link origins are normalized.
warm() { # top
    local c stem first second hit ref
    ref=$(normalized itwin-proxy "$WORK/page-$1.body" | sha256sum)
    for c in "${CONTENDERS[@]}"; do
        stem="$WORK/w-$c-$1"
        first=$(fetch "$(url_of "$c" "$1")" "$stem-1")
        second=$(fetch "$(url_of "$c" "$1")" "$stem-2")
        [[ $first == 200 && $second == 200 ]] || die "$c \$top=$1 answered $first then $second"
        case $c in
        itwin-proxy*) hit='^cache-status: itwin-proxy; hit' ;;
        nginx | nginx+links) hit='^x-cache-status: HIT' ;;
        varnish) hit='^x-cache: HIT' ;;
        *) hit= ;;
        esac
        [[ -z $hit ]] || grep -qi "$hit" "$stem-2.head" || die "$c's second answer is not a hit"
        [[ $(normalized "$c" "$stem-2.body" | sha256sum) == "$ref" ]] ||
            die "$c \$top=$1 serves other bytes than itwin-proxy"
    done
    printf '  $top=%s: %d bytes, a 200 hit in every cache, the same bytes everywhere\n' \
        "$1" "$(wc -c <"$WORK/page-$1.body")"
}

# CPU time (user + system, clock ticks) used so far by a contender's processes.
cpu_ticks() { # contender
    local pids=() pid total=0 stat fields
    case $1 in
    itwin-proxy) pids=("$PROXY_PID") ;;
    itwin-proxy+log) pids=("$LOGGED_PID") ;;
    bare-hyper) pids=("$BARE_PID") ;;
    varnish) mapfile -t pids < <(pgrep -P "$VARNISH_PID"; echo "$VARNISH_PID") ;;
    *) mapfile -t pids < <(pgrep -P "$NGINX_PID"; echo "$NGINX_PID") ;;
    esac
    for pid in "${pids[@]}"; do
        stat=$(cat "/proc/${pid// /}/stat" 2>/dev/null) || continue
        stat=${stat##*) }
        read -r -a fields <<<"$stat"
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# Runs wrk once; prints: req/s p50_ms p99_ms requests errors.
run_wrk() { # url [extra wrk arguments]
    wrk "-t$THREADS" "-c$CONNECTIONS" "-d${DURATION}s" --latency -H "$AUTH" "${@:2}" "$1" | awk '
        function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /s$/) return v * 1000
            return v
        }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        / requests in / { requests = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /Socket errors:/ { gsub(",", ""); errors += $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { errors += $5 }
        END { printf "%.0f %.3f %.3f %d %d\n", rps, p50, p99, requests, errors + 0 }'
}

echo
echo "run: PARTS='$PARTS' DURATION=$DURATION ROUNDS=$ROUNDS CONNECTIONS=$CONNECTIONS THREADS=$THREADS H2_CLIENTS=$H2_CLIENTS H2_STREAMS=$H2_STREAMS SMALL_TOP=$SMALL_TOP LARGE_TOP=$LARGE_TOP N1=$N1 N2=$N2 bench/run.sh"
echo "itwin-proxy $("$BIN/itwin-proxy" --version | awk '{print $NF}') ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')), request log off (log.access: $HAS_ACCESS)"
echo "$("$NGINX" -v 2>&1 | sed 's/.*: //'), $("$VARNISHD" -V 2>&1 | head -n1 | grep -oE 'varnish-[0-9.]+'), $(wrk -v 2>&1 | head -n1 | awk '{print "wrk " $2}'), $(h2load --version | head -n1), $(valgrind --version)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
warm "$SMALL_TOP"
warm "$LARGE_TOP"

# --- HTTP/1.1 under wrk --------------------------------------------------------------------
RESULTS="$WORK/results"
: >"$RESULTS"
if part load; then
    echo
    echo "HTTP/1.1: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency -H 'Authorization: Bearer \$TOKEN' URL"
    echo "raw: top round contender req/s p50_ms p99_ms requests errors cpu_us_per_request"
    for ((r = 1; r <= ROUNDS; r++)); do
        for top in "$SMALL_TOP" "$LARGE_TOP"; do
            for c in "${CONTENDERS[@]}"; do
                before=$(cpu_ticks "$c")
                line=$(run_wrk "$(url_of "$c" "$top")")
                cpu=$(($(cpu_ticks "$c") - before))
                read -r _ _ _ requests _ <<<"$line"
                line="$line $(awk -v t="$cpu" -v us="$TICK_US" -v n="$requests" \
                    'BEGIN { printf "%.1f", (n > 0 ? t * us / n : 0) }')"
                echo "$top $r $c $line" | tee -a "$RESULTS"
            done
        done
    done
    echo
    awk -v small="$SMALL_TOP" -v sbytes="$(wc -c <"$WORK/page-$SMALL_TOP.body")" \
        -v lbytes="$(wc -c <"$WORK/page-$LARGE_TOP.body")" -v order="${CONTENDERS[*]}" '
        {
            k = $1 SUBSEP $3
            rps[k] += $4; p50[k] += $5; p99[k] += $6; err[k] += $8; cpu[k] += $9; n[k]++
            if (!($1 in seen)) { seen[$1] = 1; tops[++ntops] = $1 }
        }
        END {
            nc = split(order, who, " ")
            print "| page | server | req/s | p50 ms | p99 ms | CPU µs/req | errors | itwin-proxy req/s ÷ this | itwin-proxy p99 ÷ this |"
            print "|---|---|---|---|---|---|---|---|---|"
            for (t = 1; t <= ntops; t++) {
                tp = tops[t]
                base = tp SUBSEP "itwin-proxy"
                for (w = 1; w <= nc; w++) {
                    k = tp SUBSEP who[w]
                    if (!(k in n)) continue
                    r = rps[k] / n[k]; b = p99[k] / n[k]
                    ratio = (who[w] == "itwin-proxy") ? "| | |" : sprintf("| %.2f | %.2f |",
                        (rps[base] / n[base]) / r, (p99[base] / n[base]) / b)
                    printf "| $top=%s (%.1f KB) | %s | %.0f | %.2f | %.2f | %.1f | %d %s\n", tp,
                        (tp == small ? sbytes : lbytes) / 1000, who[w], r, p50[k] / n[k], b,
                        cpu[k] / n[k], err[k], ratio
                }
            }
        }' "$RESULTS"
    echo "(means over $ROUNDS rounds; a req/s ratio above 1 or a p99 ratio below 1 favours itwin-proxy)"
fi

# --- gzip hits ---------------------------------------------------------------------------------
# The same pages from itwin-proxy to a client that accepts gzip and to one that does not.
if part gzip; then
    echo
    echo "gzip hits: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s -H 'Authorization: Bearer \$TOKEN' [-H 'Accept-Encoding: gzip'] URL (itwin-proxy)"
    echo "| page | encoding | body bytes per answer | req/s | p99 ms | gzip ÷ identity req/s | identity ÷ gzip bytes |"
    echo "|---|---|---|---|---|---|---|"
    for top in "$SMALL_TOP" "$LARGE_TOP"; do
        url=$(url_of itwin-proxy "$top")
        plain_bytes=$(curl -s --max-time 10 -H "$AUTH" -o /dev/null -w '%{size_download}' "$url")
        gzip_bytes=$(curl -s --max-time 10 -H "$AUTH" -H 'Accept-Encoding: gzip' \
            -o /dev/null -w '%{size_download}' "$url")
        read -r plain_rps _ plain_p99 _ _ <<<"$(run_wrk "$url")"
        read -r gzip_rps _ gzip_p99 _ _ <<<"$(run_wrk "$url" -H 'Accept-Encoding: gzip')"
        echo "| \$top=$top | identity | $plain_bytes | $plain_rps | $plain_p99 | | |"
        echo "| \$top=$top | gzip | $gzip_bytes | $gzip_rps | $gzip_p99 | $(awk -v a="$gzip_rps" -v b="$plain_rps" 'BEGIN { printf "%.2f", a / b }') | $(awk -v a="$plain_bytes" -v b="$gzip_bytes" 'BEGIN { printf "%.1f", a / b }') |"
    done
fi

# --- HTTP/2 under h2load -------------------------------------------------------------------
if part h2; then
    echo
    echo "HTTP/2 (prior knowledge): h2load -t1 -c$H2_CLIENTS -m$H2_STREAMS -D$DURATION --warm-up-time=1 -H 'Authorization: Bearer \$TOKEN' URL"
    echo "| page | server | req/s | mean ms | max ms | errors | itwin-proxy req/s ÷ this |"
    echo "|---|---|---|---|---|---|---|"
    for top in "$SMALL_TOP" "$LARGE_TOP"; do
        base=
        for c in itwin-proxy bare-hyper nginx varnish; do
            port=${PORT[$c]}
            [[ $c == nginx ]] && port=$NGINX_H2_PORT
            h2load -t1 "-c$H2_CLIENTS" "-m$H2_STREAMS" "-D$DURATION" --warm-up-time=1 \
                -H "$AUTH" "$(url_of "$c" "$top" "$port")" >"$WORK/h2load.out" 2>&1 || true
            read -r rps mean max errors < <(awk '
                function ms(v) {
                    if (v ~ /us$/) return v / 1000
                    if (v ~ /ms$/) return v + 0
                    if (v ~ /s$/) return v * 1000
                    return v
                }
                /^finished in/ { gsub(",", ""); rps = $4 }
                # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
                /^requests:/ { gsub(",", ""); errors = $10 + $12 + $14 }
                # status codes: N 2xx, N 3xx, N 4xx, N 5xx
                /^status codes:/ { gsub(",", ""); errors += $7 + $9 }
                /^time for request:/ { mx = ms($5); mean = ms($6) }
                END { printf "%.0f %.3f %.3f %d\n", rps, mean, mx, errors + 0 }' "$WORK/h2load.out")
            if [[ $rps == 0 ]]; then
                echo "| \$top=$top | $c | failed: $(grep -m1 -iE 'error|fail' "$WORK/h2load.out" || true) | | | | |"
                continue
            fi
            [[ -z $base ]] && base=$rps
            ratio=$([[ $c == itwin-proxy ]] || awk -v a="$base" -v b="$rps" 'BEGIN { printf "%.2f", a / b }')
            echo "| \$top=$top | $c | $rps | $mean | $max | $errors | $ratio |"
        done
    done
fi

# --- instructions per hit under callgrind ------------------------------------------------------
# A client making N requests over one keep-alive connection, each a 200 (and, from itwin-proxy,
# a cache hit).
cat >"$WORK/hits.py" <<'EOF'
import http.client, sys
port, path, n, token, hit = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
for _ in range(n):
    conn.request("GET", path, headers={"Authorization": "Bearer " + token})
    response = conn.getresponse()
    response.read()
    if response.status != 200 or (hit and hit not in (response.getheader("cache-status") or "")):
        sys.exit(f"answer {response.status} {response.getheader('cache-status')}")
conn.close()
EOF
# Total instructions (Ir) of one server run under callgrind serving warm-up plus `n` hits.
callgrind_ir() { # what(proxy-off|proxy-on|bare) n
    local out="$WORK/callgrind.$1.$2" pid path hit=
    case $1 in
    bare)
        path=$(page_path "$SMALL_TOP")
        valgrind --tool=callgrind --callgrind-out-file="$out" "$BARE" "127.0.0.1:$CG_PORT" \
            "$path=$WORK/static/page-$SMALL_TOP.json" >"$WORK/cg.log" 2>&1 &
        pid=$!
        wait_http "http://127.0.0.1:$CG_PORT/" 120
        ;;
    *)
        mapfile -t env < <(proxy_env "$CG_PORT" "$CG_ADMIN_PORT" "${1#proxy-}")
        env "${env[@]}" valgrind --tool=callgrind --callgrind-out-file="$out" \
            "$BIN/itwin-proxy" --config "$ROOT/config/default.toml" >"$WORK/cg.log" 2>&1 &
        pid=$!
        path=$(page_path "$SMALL_TOP")
        hit="itwin-proxy; hit"
        wait_http "http://127.0.0.1:$CG_ADMIN_PORT/readyz" 120
        # The miss that fills the page, then a first hit.
        python3 "$WORK/hits.py" "$CG_PORT" "$path" 1 "$TOKEN" "" || die "callgrind warm-up failed"
        ;;
    esac
    PIDS+=("$pid")
    python3 "$WORK/hits.py" "$CG_PORT" "$path" 1 "$TOKEN" "$hit" || die "callgrind warm-up failed"
    python3 "$WORK/hits.py" "$CG_PORT" "$path" "$2" "$TOKEN" "$hit" || die "callgrind run failed"
    # Counted up to here (a dump, to "$out.1"): what shutting down costs varies from run to
    # run (freeing what the caches deferred, say) and is no part of a hit.
    callgrind_control --dump "$pid" >/dev/null 2>&1 || die "callgrind_control failed"
    kill -TERM "$pid"
    wait "$pid" || true
    awk '/^(summary|totals):/ { print $2; exit }' "$out.1"
}
if part callgrind; then
    echo
    echo "Instructions per hit (callgrind Ir; \$top=$SMALL_TOP; N1=$N1 and N2=$N2 hits over one keep-alive connection, two runs each):"
    echo "| server | Ir per hit | ÷ bare-hyper |"
    echo "|---|---|---|"
    declare -A PER_HIT
    for what in bare proxy-off proxy-on; do
        # Each run is a subshell: a failure there prints nothing numeric, so check here.
        a=$(callgrind_ir "$what" "$N1")
        b=$(callgrind_ir "$what" "$N2")
        [[ $a =~ ^[0-9]+$ && $b =~ ^[0-9]+$ ]] || die "callgrind runs of $what failed"
        PER_HIT[$what]=$(((b - a) / (N2 - N1)))
    done
    for what in bare proxy-off proxy-on; do
        case $what in
        bare) name=bare-hyper ;;
        proxy-off) name="itwin-proxy, request log off" ;;
        proxy-on) name="itwin-proxy, request log on (info)" ;;
        esac
        echo "| $name | ${PER_HIT[$what]} | $(awk -v a="${PER_HIT[$what]}" -v b="${PER_HIT[bare]}" 'BEGIN { printf "%.2f", a / b }') |"
    done
fi

# --- start to ready, idle memory ------------------------------------------------------------
# itwin-proxy started STARTS times: from exec until /readyz answers 200 (polled every 0.2 ms),
# then its resident memory after a second of idling.
cat >"$WORK/startup.py" <<'EOF'
import socket, statistics, subprocess, sys, time
binary, config, admin_port, starts = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def ready():
    try:
        with socket.create_connection(("127.0.0.1", admin_port), timeout=1) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
times, rss = [], []
for _ in range(starts):
    started = time.perf_counter()
    child = subprocess.Popen([binary, "--config", config], stderr=subprocess.DEVNULL)
    while not ready():
        if time.perf_counter() - started > 10:
            sys.exit("not ready within 10 s")
        time.sleep(0.0002)
    times.append((time.perf_counter() - started) * 1000)
    time.sleep(1)
    with open(f"/proc/{child.pid}/status") as status:
        rss += [int(l.split()[1]) / 1024 for l in status if l.startswith("VmRSS:")]
    child.terminate()
    child.wait()
print(f"{statistics.median(times):.1f} {min(times):.1f} {max(times):.1f} {statistics.median(rss):.1f}")
EOF
if part startup; then
    STARTS=${STARTS:-10}
    mapfile -t env < <(proxy_env "$CG_PORT" "$CG_ADMIN_PORT" on)
    read -r median fastest slowest rss < <(env "${env[@]}" python3 "$WORK/startup.py" \
        "$BIN/itwin-proxy" "$ROOT/config/default.toml" "$CG_ADMIN_PORT" "$STARTS") ||
        die "start-up measurement failed"
    echo
    echo "Start to ready (exec until /readyz is 200), $STARTS starts: median $median ms (fastest $fastest, slowest $slowest); idle RSS median $rss MiB"
fi

echo
echo "itwin-proxy's own count of what it served under load (cache label) and its upstream calls:"
curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" |
    grep -E '^itwin_proxy_(requests_total|upstream_requests_total)' | sed 's/^/  /' || true
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "build $((BUILT - STARTED)) s, benchmark $((SECONDS - BUILT)) s"
