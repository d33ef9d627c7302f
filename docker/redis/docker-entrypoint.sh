#!/bin/sh
# Entrypoint of crypto-prediction-infra/redis:7-offline, compatible with the official redis image's:
# `IMAGE --option …` or `IMAGE file.conf …` means `redis-server …`; redis-server runs as the
# non-root `redis` user; /data (a fresh named volume is root's) is handed to redis first.
set -e

# first argument is `-f`, `--some-option` or `something.conf`
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
	find . \! -user redis -exec chown redis '{}' +
	# A config file copied in as root's and 0600 (it holds the ACL passwords: Pulumi's uploads cannot
	# set an owner) is handed to redis, so the server reads it and nobody else does.
	for arg; do
		case "$arg" in
			*.conf) if [ -f "$arg" ] && [ "$(stat -c %u "$arg")" = 0 ]; then chown redis:redis "$arg" 2>/dev/null || :; fi ;;
		esac
	done
	# setpriv (util-linux) drops to redis without an extra package such as gosu.
	exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

# Files Redis writes (dump.rdb, appendonlydir) are readable by redis only, unless a umask was chosen.
um="$(umask)"
if [ "$um" = 0022 ]; then
	umask 0077
fi

exec "$@"
