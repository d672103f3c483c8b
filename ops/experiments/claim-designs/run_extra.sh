#!/bin/bash
# Crashed-worker scenario (20 batches = 10,000 rows leased by a dead worker) and a third drain repetition.
cd /tmp/leaseexp
for d in A B C85; do /usr/bin/python3 stale.py $d 20 2>&1 | grep -v NOTICE; done
for n in 1 2; do for d in B C85 A C60; do /usr/bin/python3 bench.py drain $d $n 3 2>&1 | grep -v NOTICE; done; done
