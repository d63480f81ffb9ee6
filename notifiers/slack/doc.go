// Package slack asks people in Slack to approve or deny held MCP tool calls.
//
// Approvers live in Slack, so a held call must reach the right people
// there in seconds, show exactly what would run, accept a click only from
// someone allowed to decide, and afterwards show the whole channel what
// happened, wherever it was decided.
//
// The Notifier is a broker.Notifier and broker.Updater: it posts a Block
// Kit message for each approval and rewrites it on every vote and outcome.
// Clicks come back over Socket Mode (RunSocketMode; no public URL needed)
// or as signed HTTP requests (InteractivityHandler, in http.go); both end
// in click.go, in one Voter.Vote, the call every channel votes through.
// Nothing here decides on its own: a failure to reach Slack is logged and
// leaves the call waiting for another channel or its timeout.
//
// The broker never imports this package; cmd/airlock wires it in.
package slack
