package broker

// People say which person an identity is, whichever way it was
// established: config ties an agent token's name, an OAuth subject or
// email, a web sign-in and a Slack account to one name, so that the rule
// "the requester may not approve their own call", and a quorum of distinct
// people, see one person where the channels see several accounts.
//
// The key is the identity's source and id (PersonKey); the value is the
// person. Sources are a Principal's ("token", "oauth", "os") and the
// channels' ("web" for a sign-in, "slack" for a Slack user id).
type People map[string]string

// PersonKey is the key of People for an identity established by source.
func PersonKey(source, id string) string { return source + ":" + id }

// Person is the person the identity is, or "" when People name none.
func (p People) Person(source, id string) string {
	if id == "" {
		return "" // an anonymous caller is nobody's identity
	}
	return p[PersonKey(source, id)]
}

// Person is the person config maps the identity to, or "".
func (b *Broker) Person(source, id string) string { return b.people.Person(source, id) }
