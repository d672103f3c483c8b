#!/bin/bash
# Creates and starts the throwaway cluster in /tmp/leaseexp/data on port 55433.
set -e
D=/tmp/leaseexp/data
if [ ! -d $D ]; then
  runuser -u postgres -- /usr/local/bin/initdb -D $D -U postgres --auth=trust -E UTF8 >/tmp/leaseexp/initdb.log
  cat >> $D/postgresql.conf <<CONF
port = 55433
listen_addresses = '127.0.0.1'
unix_socket_directories = '/tmp/leaseexp'
shared_buffers = 1GB
max_wal_size = 8GB
checkpoint_timeout = 30min
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = top
synchronous_commit = on
fsync = on
max_connections = 50
CONF
fi
runuser -u postgres -- /usr/local/bin/pg_ctl -D $D -l /tmp/leaseexp/server.log -w start
