#!/usr/bin/env bash
# Cache hits under load: itwin-proxy against nginx doing the same job, side by side.
#
# Starts the upstream simulator, itwin-proxy and nginx (a caching reverse proxy configured like
# itwin-proxy: per-token key, 60 s for 200s, collapsed fills, keepalive upstream). Each round
# warms a page of its own in every contender, checks each serves it as a 200 cache hit and
# that the bodies match, then drives each in turn with the same wrk load, so machine noise
# falls on all alike. A third contender, nginx with sub_filter, also rewrites the upstream's
# links the way itwin-proxy does (plain nginx hands them out unchanged).
#
# Everything listens on 127.0.0.1 only; every process started here is stopped on exit.
# Tunables (environment): THREADS, CONNECTIONS, DURATION, ROUNDS, TOP, TOP_SMALL, PORT_BASE.
set -euo pipefail

THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
TOP=${TOP:-100}
TOP_SMALL=${TOP_SMALL:-1}
PORT_BASE=${PORT_BASE:-28080}

PROXY_PORT=$PORT_BASE
SIM_PORT=$((PORT_BASE + 1))
ADMIN_PORT=$((PORT_BASE + 2))
NGINX_PORT=$((PORT_BASE + 3))
NGINX_LINKS_PORT=$((PORT_BASE + 4))
IMODEL=5db42812-ebb8-4c58-98a4-2eaa99e0d8b6

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/itwin-proxy-load.XXXXXX")
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
    echo "load.sh: $*" >&2
    for log in "$WORK"/*.log; do
        [[ -s $log ]] && { echo "--- $(basename "$log")" >&2; tail -n 20 "$log" >&2; }
    done
    exit 1
}

# Waits (at most 10 s) until a URL answers at all.
wait_http() {
    local url=$1 i
    for ((i = 0; i < 100; i++)); do
        curl -s -o /dev/null --max-time 1 "$url" && return 0
        sleep 0.1
    done
    die "nothing answers at $url"
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

page_url() { # port top skip
    echo "http://127.0.0.1:$1/export/connections?imodelId=$IMODEL&\$top=$2&\$skip=$3"
}

# --- tools and binaries --------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
if ((${#missing[@]})); then
    echo "installing ${missing[*]} ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >"$WORK/apt.log" 2>&1 || die "apt-get install ${missing[*]} failed"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "building release binaries ..."
(cd "$ROOT" && cargo build --release --bins --quiet)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
BUILT=$SECONDS

for port in "$PROXY_PORT" "$SIM_PORT" "$ADMIN_PORT" "$NGINX_PORT" "$NGINX_LINKS_PORT"; do
    port_free "$port" || die "port $port is in use (set PORT_BASE)"
done

# --- the upstream simulator ----------------------------------------------------------------
"$BIN/itwin-proxy-sim" --listen "127.0.0.1:$SIM_PORT" --secret load-bench \
    >"$WORK/sim.out" 2>"$WORK/sim.log" &
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
# Its tokio runtime has one worker thread per core (the multi-thread default).
ITWIN_PROXY__UPSTREAM__BASE_URL="http://127.0.0.1:$SIM_PORT" \
    ITWIN_PROXY__SERVER__LISTEN="127.0.0.1:$PROXY_PORT" \
    ITWIN_PROXY__SERVER__PUBLIC_BASE_URL="http://127.0.0.1:$PROXY_PORT" \
    ITWIN_PROXY__SERVER__ADMIN_LISTEN="127.0.0.1:$ADMIN_PORT" \
    ITWIN_PROXY__LOG__LEVEL=warn \
    "$BIN/itwin-proxy" --config "$ROOT/config/default.toml" >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=("$PROXY_PID")

# --- nginx -----------------------------------------------------------------------------------
# worker_processes auto: one worker per core, matching itwin-proxy's runtime. As root, the
# workers drop to nobody, so they get the work directory.
NGINX_USER=
if ((EUID == 0)); then
    NGINX_USER="user nobody $(id -gn nobody);"
    chown -R nobody "$WORK"
fi

# The location both nginx servers share: the upstream, the cache and its key.
nginx_location() { # zone
    cat <<EOF
            proxy_pass http://sim;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache $1;
            # Per token, per page, per Accept and Prefer, like itwin-proxy's key.
            proxy_cache_key "\$http_authorization|\$http_accept|\$http_prefer|\$request_uri";
            proxy_cache_methods GET;
            proxy_cache_valid 200 60s;
            proxy_cache_lock on;
            proxy_ignore_headers Cache-Control Expires Set-Cookie Vary X-Accel-Expires;
            add_header X-Cache-Status \$upstream_cache_status always;
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
    # sendfile and tcp_nopush as in Debian's shipped nginx.conf; keepalive_requests raised so
    # wrk's connections are never closed midway.
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx-body;
    proxy_temp_path $WORK/nginx-proxy;
    fastcgi_temp_path $WORK/nginx-fastcgi;
    uwsgi_temp_path $WORK/nginx-uwsgi;
    scgi_temp_path $WORK/nginx-scgi;
    proxy_cache_path $WORK/nginx-cache keys_zone=pages:10m max_size=256m inactive=10m use_temp_path=off;
    proxy_cache_path $WORK/nginx-cache-links keys_zone=links:10m max_size=256m inactive=10m use_temp_path=off;
    upstream sim {
        server 127.0.0.1:$SIM_PORT;
        keepalive 32;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
$(nginx_location pages)
        }
    }
    server {
        listen 127.0.0.1:$NGINX_LINKS_PORT;
        location / {
$(nginx_location links)
            # sub_filter interleaves hundreds of small file and memory pieces per page; sent
            # with sendfile and TCP_CORK they stall (about 20 times fewer requests/s).
            sendfile off;
            tcp_nopush off;
            proxy_set_header Accept-Encoding "";
            sub_filter_types application/json;
            sub_filter_once off;
            sub_filter "http://127.0.0.1:$SIM_PORT" "http://127.0.0.1:$NGINX_LINKS_PORT";
        }
    }
}
EOF
"$NGINX" -t -q -p "$WORK/" -e "$WORK/nginx.log" -c "$WORK/nginx.conf" || die "bad nginx config"
"$NGINX" -p "$WORK/" -e "$WORK/nginx.log" -c "$WORK/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
PIDS+=("$NGINX_PID")

wait_http "http://127.0.0.1:$ADMIN_PORT/readyz"
wait_http "http://127.0.0.1:$NGINX_PORT/"
wait_http "http://127.0.0.1:$NGINX_LINKS_PORT/"

# --- warm, check, load ------------------------------------------------------------------------
declare -A NAME=([$PROXY_PORT]=itwin-proxy [$NGINX_PORT]=nginx [$NGINX_LINKS_PORT]=nginx+links)
CONTENDERS=("$PROXY_PORT" "$NGINX_PORT" "$NGINX_LINKS_PORT")
WRK=(wrk "-t$THREADS" "-c$CONNECTIONS" "-d$DURATION" --latency)

# Fetches a page with exactly the headers wrk sends (so the same cache key), saving headers and
# body; prints the status code.
fetch() { # url file-stem
    curl -s --max-time 5 -H "$AUTH" -H 'Accept:' -H 'User-Agent:' \
        -D "$2.head" -o "$2.body" -w '%{http_code}' "$1" || true
}

# A body with the origin its server wrote into the links replaced, for comparing.
normalized() { # port file
    local origin="http://127.0.0.1:$1"
    [[ $1 == "$NGINX_PORT" ]] && origin="http://127.0.0.1:$SIM_PORT"
    sed "s#$origin#ORIGIN#g" "$2"
}

# Warms one page in every contender: the first request fills it, the second must be a 200 hit;
# then compares the bodies.
warm() { # top skip
    local port stem first second body ref same raw
    for port in "${CONTENDERS[@]}"; do
        stem="$WORK/p$port"
        first=$(fetch "$(page_url "$port" "$1" "$2")" "$stem-1")
        second=$(fetch "$(page_url "$port" "$1" "$2")" "$stem-2")
        [[ $first == 200 && $second == 200 ]] ||
            die "${NAME[$port]} \$top=$1 \$skip=$2 answered $first then $second"
        if [[ $port == "$PROXY_PORT" ]]; then
            grep -qi '^cache-status: itwin-proxy; hit' "$stem-2.head" ||
                die "itwin-proxy's second answer is not a hit: $(grep -i '^cache-status' "$stem-2.head")"
        else
            grep -qi '^x-cache-status: HIT' "$stem-2.head" ||
                die "${NAME[$port]}'s second answer is not a hit"
        fi
        [[ -s "$stem-2.body" ]] || die "empty body from ${NAME[$port]}"
    done
    ref=$(normalized "$PROXY_PORT" "$WORK/p$PROXY_PORT-2.body" | sha256sum)
    for port in "${CONTENDERS[@]}"; do
        body="$WORK/p$port-2.body"
        raw=differs
        cmp -s "$body" "$WORK/p$PROXY_PORT-2.body" && raw=identical
        same=DIFFERENT
        [[ $(normalized "$port" "$body" | sha256sum) == "$ref" ]] && same=identical
        printf '  warm $top=%s $skip=%s %-12s 200 then 200 hit, %d bytes, %s; with link origins normalized: %s\n' \
            "$1" "$2" "${NAME[$port]}" "$(wc -c <"$body")" "$raw" "$same"
    done
}

# Runs wrk once; prints: rps p50_ms p99_ms requests errors.
run_wrk() { # url
    "${WRK[@]}" -H "$AUTH" "$1" | awk '
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

# CPU time (user + system, in clock ticks) a contender's processes have used so far: the
# itwin-proxy process (all its threads), or nginx's master and workers (both nginx servers
# share them, but only one contender is driven at a time).
cpu_ticks() { # port
    local pids pid total=0 stat
    if [[ $1 == "$PROXY_PORT" ]]; then
        pids=("$PROXY_PID")
    else
        mapfile -t pids < <(ps -o pid= --ppid "$NGINX_PID")
        pids+=("$NGINX_PID")
    fi
    for pid in "${pids[@]}"; do
        stat=$(cat "/proc/${pid// /}/stat" 2>/dev/null) || continue
        stat=${stat##*) }
        read -r -a fields <<<"$stat"
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))

RESULTS="$WORK/results"
: >"$RESULTS"
# One round: a page of its own, warmed just before, so no run outlives the 60 s freshness and
# every contender serves the same bytes; then each contender in turn.
round() { # top skip round
    local port line bytes before cpu requests
    warm "$1" "$2"
    bytes=$(wc -c <"$WORK/p$PROXY_PORT-2.body")
    for port in "${CONTENDERS[@]}"; do
        before=$(cpu_ticks "$port")
        line=$(run_wrk "$(page_url "$port" "$1" "$2")")
        cpu=$(($(cpu_ticks "$port") - before))
        read -r _ _ _ requests _ <<<"$line"
        # CPU microseconds per request served.
        line="$line $(awk -v t="$cpu" -v us="$TICK_US" -v n="$requests" \
            'BEGIN { printf "%.1f", (n > 0 ? t * us / n : 0) }')"
        echo "$1 ${NAME[$port]} $3 $line $bytes" >>"$RESULTS"
        printf '  $top=%-4s round %d  %-12s %s\n' "$1" "$3" "${NAME[$port]}" "$line"
    done
}

echo
echo "run: THREADS=$THREADS CONNECTIONS=$CONNECTIONS DURATION=$DURATION ROUNDS=$ROUNDS TOP=$TOP TOP_SMALL=$TOP_SMALL PORT_BASE=$PORT_BASE bench/load.sh"
echo "command: ${WRK[*]} -H 'Authorization: Bearer \$TOKEN' '$(page_url PORT TOP SKIP)'"
echo "  TOP $TOP ($ROUNDS rounds), then $TOP_SMALL (1 round); SKIP: the round's own page;"
echo "  PORT: itwin-proxy $PROXY_PORT, nginx $NGINX_PORT, nginx+links $NGINX_LINKS_PORT, in turn"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "raw: \$top round contender req/s p50_ms p99_ms requests errors cpu_us_per_request"
for ((r = 1; r <= ROUNDS; r++)); do
    round "$TOP" "$((r - 1))" "$r"
done
round "$TOP_SMALL" "$ROUNDS" 1

# --- report --------------------------------------------------------------------------------------
echo
awk '
    {
        k = $1 SUBSEP $2
        rps[k] += $4; p50[k] += $5; p99[k] += $6; err[k] += $8; cpu[k] += $9; n[k]++
        bytes[$1] = $10
        if (!($1 in seen)) { seen[$1] = 1; order[++tops] = $1 }
    }
    END {
        print "| body | contender | rounds | req/s | p50 ms | p99 ms | CPU µs/req | errors | req/s ratio | p50 ratio | p99 ratio | CPU ratio |"
        print "|---|---|---|---|---|---|---|---|---|---|---|---|"
        for (t = 1; t <= tops; t++) {
            tp = order[t]
            base = tp SUBSEP "itwin-proxy"
            split("itwin-proxy nginx nginx+links", who, " ")
            for (w = 1; w <= 3; w++) {
                k = tp SUBSEP who[w]
                if (!(k in n)) continue
                r = rps[k] / n[k]; a = p50[k] / n[k]; b = p99[k] / n[k]; c = cpu[k] / n[k]
                if (who[w] == "itwin-proxy") ratio = "| | | | |"
                else ratio = sprintf("| %.2f | %.2f | %.2f | %.2f |", (rps[base] / n[base]) / r,
                    (p50[base] / n[base]) / a, (p99[base] / n[base]) / b, (cpu[base] / n[base]) / c)
                printf "| $top=%s (%d B) | %s | %d | %.0f | %.2f | %.2f | %.1f | %d %s\n", tp,
                    bytes[tp], who[w], n[k], r, a, b, c, err[k], ratio
            }
        }
    }' "$RESULTS"
echo
echo "ratios are itwin-proxy / that row (req/s: above 1 means itwin-proxy is faster; latency"
echo "and CPU per request: below 1 means itwin-proxy is faster); values are means over the rounds"

echo
echo "itwin-proxy's own count of what it served (cache label) and of its upstream calls:"
curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" |
    grep -E '^itwin_proxy_(requests_total|upstream_requests_total)' | sed 's/^/  /' || true
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "build $((BUILT - STARTED)) s, benchmark $((SECONDS - BUILT)) s"
