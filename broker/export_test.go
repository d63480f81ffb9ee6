package broker

// TrackedHolds counts the approvals the broker keeps in memory, for tests
// that check decided calls are let go.
func (b *Broker) TrackedHolds() int {
	b.live.mu.Lock()
	defer b.live.mu.Unlock()
	return len(b.live.byID)
}

// NoteAuditFailure lets tests fill the late-record backlog without
// running a call for each record.
func (b *Broker) NoteAuditFailure(ran *AuditRecord, err error) { b.auditFailed(ran, err) }
