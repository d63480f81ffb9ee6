package broker

// NoteAuditFailure lets tests fill the late-record backlog without
// running a call for each record.
func (b *Broker) NoteAuditFailure(ran *AuditRecord, err error) { b.auditFailed(ran, err) }
