#!/bin/bash
# Interleaved matrix: reps outermost, designs and driver counts rotated within each rep.
cd /tmp/leaseexp
REPS=${REPS:-2}
for rep in $(seq 1 $REPS); do
  if [ $((rep % 2)) = 1 ]; then order="A B C85 C60"; else order="C60 C85 B A"; fi
  for n in 1 2; do
    for d in $order; do
      /usr/bin/python3 bench.py drain $d $n $rep 2>&1 | grep -v NOTICE
    done
  done
done
for rep in $(seq 1 $REPS); do
  for d in A B C85 C60; do
    /usr/bin/python3 bench.py latency $d $rep 2>&1 | grep -v NOTICE
  done
done
