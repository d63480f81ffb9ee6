//go:build race

package main

// raceEnabled says the tests run under the race detector, which makes the
// brokers they start several times slower: the load test then makes a
// tenth of its calls, and .ci/run runs it in full without the detector.
const raceEnabled = true
