#!/usr/bin/env bash
# Cache hits under load: itwin-proxy against nginx doing the same job, side by side.
#
# Starts the upstream simulator, itwin-proxy and nginx (a caching reverse proxy configured like
# itwin-proxy: per-token key, 60 s for 200s, collapsed fills, keepalive upstream), warms one
# page in each, checks both serve it from cache, then drives each with the same wrk load,
# alternating between them so machine noise falls on both alike. A third contender, nginx
# with sub_filter, also rewrites the upstream's links the way itwin-proxy does.
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

page_url() { # port top
    echo "http://127.0.0.1:$1/export/connections?imodelId=$IMODEL&\$top=$2"
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
PIDS+=($!)

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
PIDS+=($!)

wait_http "http://127.0.0.1:$ADMIN_PORT/readyz"
wait_http "http://127.0.0.1:$NGINX_PORT/"
wait_http "http://127.0.0.1:$NGINX_LINKS_PORT/"

# --- warm and check ----------------------------------------------------------------------------
declare -A NAME=([$PROXY_PORT]=itwin-proxy [$NGINX_PORT]=nginx [$NGINX_LINKS_PORT]=nginx+links)
CONTENDERS=("$PROXY_PORT" "$NGINX_PORT" "$NGINX_LINKS_PORT")

# Fetches a page, saving headers and body; prints the status code.
fetch() { # port top file-stem
    curl -s --max-time 5 -H "$AUTH" -D "$3.head" -o "$3.body" -w '%{http_code}' "$(page_url "$1" "$2")" || true
}

# A body with the origin its server wrote into the links replaced, for comparing.
normalized() { # port file
    local origin="http://127.0.0.1:$1"
    [[ $1 == "$NGINX_PORT" ]] && origin="http://127.0.0.1:$SIM_PORT"
    sed "s#$origin#ORIGIN#g" "$2"
}

for top in "$TOP" "$TOP_SMALL"; do
    for port in "${CONTENDERS[@]}"; do
        stem="$WORK/p$port-t$top"
        first=$(fetch "$port" "$top" "$stem-1")
        second=$(fetch "$port" "$top" "$stem-2")
        [[ $first == 200 && $second == 200 ]] ||
            die "${NAME[$port]} \$top=$top answered $first then $second"
        if [[ $port == "$PROXY_PORT" ]]; then
            grep -qi '^cache-status: itwin-proxy; hit' "$stem-2.head" ||
                die "itwin-proxy's second answer is not a hit: $(grep -i '^cache-status' "$stem-2.head")"
        else
            grep -qi '^x-cache-status: HIT' "$stem-2.head" ||
                die "${NAME[$port]}'s second answer is not a hit"
        fi
    done
    ref=$(normalized "$PROXY_PORT" "$WORK/p$PROXY_PORT-t$top-2.body" | sha256sum)
    for port in "${CONTENDERS[@]}"; do
        body="$WORK/p$port-t$top-2.body"
        [[ -s $body ]] || die "empty body from ${NAME[$port]}"
        same=differs
        [[ $(normalized "$port" "$body" | sha256sum) == "$ref" ]] && same="identical to itwin-proxy's"
        raw=differs
        cmp -s "$body" "$WORK/p$PROXY_PORT-t$top-2.body" && raw=identical
        printf '  $top=%-4s %-12s 200, hit, %6d bytes; bytes %s; with link origins normalized: %s\n' \
            "$top" "${NAME[$port]}" "$(wc -c <"$body")" "$raw" "$same"
    done
done

# --- load ----------------------------------------------------------------------------------------
WRK=(wrk "-t$THREADS" "-c$CONNECTIONS" "-d$DURATION" --latency)
echo
echo "command: ${WRK[*]} -H 'Authorization: Bearer \$TOKEN' '$(page_url PORT TOP)'"
echo "         (TOP = $TOP, then $TOP_SMALL; PORT: itwin-proxy $PROXY_PORT, nginx $NGINX_PORT, nginx+links $NGINX_LINKS_PORT)"

# Runs wrk once; prints: rps p50_ms p99_ms requests errors.
run_wrk() { # port top
    "${WRK[@]}" -H "$AUTH" "$(page_url "$1" "$2")" | awk '
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

RESULTS="$WORK/results"
: >"$RESULTS"
measure() { # top round
    local port line
    for port in "${CONTENDERS[@]}"; do
        line=$(run_wrk "$port" "$1")
        echo "$1 ${NAME[$port]} $2 $line" >>"$RESULTS"
        printf '  $top=%-4s round %d  %-12s %s\n' "$1" "$2" "${NAME[$port]}" "$line"
    done
}

echo
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "raw: \$top round contender req/s p50_ms p99_ms requests errors"
for ((round = 1; round <= ROUNDS; round++)); do
    measure "$TOP" "$round"
done
measure "$TOP_SMALL" 1

# --- report --------------------------------------------------------------------------------------
echo
awk -v top="$TOP" -v small="$TOP_SMALL" -v body_top="$(wc -c <"$WORK/p$PROXY_PORT-t$TOP-2.body")" \
    -v body_small="$(wc -c <"$WORK/p$PROXY_PORT-t$TOP_SMALL-2.body")" '
    {
        k = $1 SUBSEP $2
        rps[k] += $4; p50[k] += $5; p99[k] += $6; err[k] += $8; n[k]++
        if (!($1 in seen)) { seen[$1] = 1; order[++tops] = $1 }
    }
    END {
        print "| body | contender | rounds | req/s | p50 ms | p99 ms | errors | req/s ratio | p50 ratio | p99 ratio |"
        print "|---|---|---|---|---|---|---|---|---|---|"
        for (t = 1; t <= tops; t++) {
            tp = order[t]
            bytes = (tp == top) ? body_top : body_small
            base = tp SUBSEP "itwin-proxy"
            split("itwin-proxy nginx nginx+links", who, " ")
            for (w = 1; w <= 3; w++) {
                k = tp SUBSEP who[w]
                if (!(k in n)) continue
                r = rps[k] / n[k]; a = p50[k] / n[k]; b = p99[k] / n[k]
                if (who[w] == "itwin-proxy") ratio = "| | | |"
                else ratio = sprintf("| %.2f | %.2f | %.2f |", (rps[base] / n[base]) / r,
                    (p50[base] / n[base]) / a, (p99[base] / n[base]) / b)
                printf "| $top=%s (%d B) | %s | %d | %.0f | %.2f | %.2f | %d %s\n", tp, bytes,
                    who[w], n[k], r, a, b, err[k], ratio
            }
        }
    }' "$RESULTS"
echo
echo "ratios are itwin-proxy / that row (req/s: above 1 means itwin-proxy is faster;"
echo "latency: below 1 means itwin-proxy is faster); values are means over the rounds"

echo
echo "itwin-proxy's own count of what it served (cache label) and of its upstream calls:"
curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" |
    grep -E '^itwin_proxy_(requests_total|upstream_requests_total)' | sed 's/^/  /' || true
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "build $((BUILT - STARTED)) s, benchmark $((SECONDS - BUILT)) s"
