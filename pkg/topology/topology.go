// Package topology declares, in one place, every subject, stream and durable
// consumer of tsmhub as Go values. Services and tools never spell a subject or
// stream name themselves: they call the builders here, so that the AsyncAPI
// document in schemas/ and the code cannot drift apart silently.
//
// Subject layout (tokens are dot separated, broad on the left):
//
//	tsm.sp.<spId>.req.<op>             SP TSM -> central TSM (public contract v1)
//	tsm.sp.<spId>.res.<op>             central TSM -> SP TSM responses
//	tsm.sp.<spId>.ntf.<kind>           central TSM -> SP TSM notifications
//	tsm.reg.<entity>.<id...>           registry state (full records, latest per subject)
//	tsm.conv.<seId>.<event>            conversation steps
//	tsm.script.<seId>.<event>          script routing steps
//	tsm.mno.<mnoId>.<seId>.<event>     OTA delivery through one MNO adapter
//	tsm.se.<seId>.<event>              secure element (card) execution
//	tsm.dlq.<service>.<consumer>       dead letters, with the reason in headers
//
// The SE id always sits at a fixed token of the internal subjects so that work
// for one SE can be serialised (see Consumer.OrderingToken).
package topology

import (
	"regexp"
	"strings"
	"time"
)

// SPIDPattern is the syntax of an SP id (DESIGN.md section 4).
var SPIDPattern = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

// seIDPattern is what may stand in the SE-id token: the CIN in hex.
var seIDPattern = regexp.MustCompile(`^[0-9A-F]{2,32}$`)

// ValidSEID reports whether s can be used as an SE id token (uppercase hex CIN).
func ValidSEID(s string) bool { return seIDPattern.MatchString(s) }

// ValidToken reports whether s can be used as a single subject token.
func ValidToken(s string) bool {
	return s != "" && !strings.ContainsAny(s, ". *>\t\r\n")
}

// Public contract operations (DESIGN.md section 4).
const (
	OpGetSEID            = "get-se-id"
	OpGetSEData          = "get-se-data"
	OpBeginConversation  = "begin-conversation"
	OpSendScript         = "send-script"
	OpEndConversation    = "end-conversation"
	OpPrePersonalize     = "pre-personalize"
	OpActivateService    = "activate-service"
	OpSuspendService     = "suspend-service"
	OpResumeService      = "resume-service"
	OpTerminateService   = "terminate-service"
	OpGetServiceState    = "get-service-state"
	SubjectPrefixSP      = "tsm.sp."
	SubjectPrefixDLQ     = "tsm.dlq."
	CentralSource        = "urn:tsm:central"
	SPSourcePrefix       = "urn:tsm:sp:"
	ServiceSourcePrefix  = "urn:tsm:svc:"
	RequestTypeSuffix    = ".request"
	ResponseTypeSuffix   = ".response"
	NotificationTypeTail = ".notification"
)

// Operations lists every public operation; an op outside this list is answered
// with INVALID_ARGUMENT by the registry's request guard.
var Operations = []string{
	OpGetSEID, OpGetSEData, OpBeginConversation, OpSendScript, OpEndConversation,
	OpPrePersonalize, OpActivateService, OpSuspendService, OpResumeService,
	OpTerminateService, OpGetServiceState,
}

// KnownOp reports whether op is a public contract operation.
func KnownOp(op string) bool {
	for _, o := range Operations {
		if o == op {
			return true
		}
	}
	return false
}

// SPRequest is the subject an SP publishes op requests to.
func SPRequest(spID, op string) string { return "tsm.sp." + spID + ".req." + op }

// SPResponse is the subject the central TSM answers op requests on.
func SPResponse(spID, op string) string { return "tsm.sp." + spID + ".res." + op }

// SPNotification is the subject of an unsolicited notification to an SP.
func SPNotification(spID, kind string) string { return "tsm.sp." + spID + ".ntf." + kind }

// ParseSPSubject splits tsm.sp.<spId>.<dir>.<name>; ok is false for anything else.
func ParseSPSubject(subject string) (spID, dir, name string, ok bool) {
	t := strings.Split(subject, ".")
	if len(t) != 5 || t[0] != "tsm" || t[1] != "sp" {
		return "", "", "", false
	}
	return t[2], t[3], t[4], true
}

// Registry state subjects: each message is the full current record, so a
// projection needs only the latest message per subject.
func RegistrySE(seID string) string             { return "tsm.reg.se." + seID }
func RegistryMNO(mnoID string) string           { return "tsm.reg.mno." + mnoID }
func RegistrySP(spID string) string             { return "tsm.reg.sp." + spID }
func RegistryService(number, ver string) string { return "tsm.reg.svc." + number + "." + ver }

// Internal step subjects.
func ConversationBegin(seID string) string { return "tsm.conv." + seID + ".begin" }

// ConversationProcedure carries a ProcedureRequested from the registry to the
// conversation service (pre-personalize, service life cycle, lost/stolen, audit).
func ConversationProcedure(seID string) string { return "tsm.conv." + seID + ".procedure" }

// ContentChanged carries the conversation service's ContentChanged snapshots
// to the registry's content model.
func ContentChanged(seID string) string          { return "tsm.conv." + seID + ".content" }
func ScriptRequested(seID string) string         { return "tsm.script." + seID + ".requested" }
func ScriptCompleted(seID string) string         { return "tsm.script." + seID + ".completed" }
func MNODeliver(mnoID, seID string) string       { return "tsm.mno." + mnoID + "." + seID + ".deliver" }
func SEExecute(seID string) string               { return "tsm.se." + seID + ".execute" }
func SEExecuted(seID string) string              { return "tsm.se." + seID + ".executed" }
func DeadLetter(service, consumer string) string { return "tsm.dlq." + service + "." + consumer }

// Retention shared by the replayable streams: long enough for an SP that was
// offline over a weekend, for audits and for rebuilding projections.
const defaultMaxAge = 7 * 24 * time.Hour

// Stream is a JetStream stream declaration.
type Stream struct {
	// Name of the stream (no dots; it becomes a directory name).
	Name string
	// Subjects captured by the stream.
	Subjects []string
	// MaxAge bounds retention; 0 means unlimited.
	MaxAge time.Duration
	// MaxMsgsPerSubject keeps only the latest N messages per subject (0 = no limit).
	MaxMsgsPerSubject int64
	// Duplicates is the Nats-Msg-Id deduplication window.
	Duplicates time.Duration
	// Description says what the stream is for, shown by `nats stream info`.
	Description string
}

var (
	// StreamRequests captures every SP request. Its dedup window is short on
	// purpose: a request re-sent with an already processed ce-id must reach the
	// service so that it can answer with the original response again (the
	// services keep their own idempotency records, keyed by SP and ce-id, with no
	// time limit).
	StreamRequests = Stream{Name: "TSM_REQ", Subjects: []string{"tsm.sp.*.req.>"}, MaxAge: defaultMaxAge,
		Duplicates: 100 * time.Millisecond, Description: "SP TSM requests (public contract v1)"}
	// StreamResponses captures responses and notifications, so an SP that was
	// offline reads them later.
	StreamResponses = Stream{Name: "TSM_RES", Subjects: []string{"tsm.sp.*.res.>", "tsm.sp.*.ntf.>"},
		MaxAge: defaultMaxAge, Duplicates: 2 * time.Minute, Description: "responses and notifications to SP TSMs"}
	// StreamRegistry carries the registry's records; latest per subject is the
	// state, so projections rebuild by replaying it from the start.
	StreamRegistry = Stream{Name: "TSM_REG", Subjects: []string{"tsm.reg.>"}, MaxMsgsPerSubject: 1,
		Duplicates: 2 * time.Minute, Description: "registry records: SEs, MNOs, SPs, services (latest per subject)"}
	// StreamSteps carries every internal step of a request.
	StreamSteps = Stream{Name: "TSM_STEPS", Subjects: []string{"tsm.conv.>", "tsm.script.>", "tsm.mno.>", "tsm.se.>"},
		MaxAge: defaultMaxAge, Duplicates: 2 * time.Minute, Description: "internal request steps between services"}
	// StreamDeadLetters keeps messages no handler could process, with the reason.
	StreamDeadLetters = Stream{Name: "TSM_DLQ", Subjects: []string{"tsm.dlq.>"}, MaxAge: 30 * 24 * time.Hour,
		Duplicates: 2 * time.Minute, Description: "dead letters with Tsm-Dlq-Reason headers"}
)

// Streams lists every stream; services create or update them at start-up.
var Streams = []Stream{StreamRequests, StreamResponses, StreamRegistry, StreamSteps, StreamDeadLetters}

// Consumer is a durable pull consumer declaration.
type Consumer struct {
	// Service that owns the consumer (used for the dead-letter subject).
	Service string
	// Name is the durable name.
	Name string
	// Stream the consumer reads.
	Stream string
	// FilterSubjects narrows what it reads.
	FilterSubjects []string
	// OrderingToken is the index of the subject token whose messages are
	// processed strictly in order (the SE id); -1 processes in any order.
	OrderingToken int
	// OrderingFields, when set, replace OrderingToken: messages are processed
	// strictly in order per value of the first of these top-level string
	// fields of the event data that is present and not empty (SP requests,
	// whose subject names the SP but neither the SE nor the conversation). A
	// message with none of them is ordered by its ce-id, i.e. in any order.
	OrderingFields []string
	// MaxDeliver bounds redeliveries before the message goes to the DLQ.
	MaxDeliver int
	// Description says what the consumer does.
	Description string
}

// Default delivery policy for every consumer: after MaxDeliver attempts with
// the backoff below a message is dead-lettered with the last error.
const DefaultMaxDeliver = 8

// Backoff is the redelivery schedule for transient failures.
var Backoff = []time.Duration{200 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second,
	10 * time.Second, 30 * time.Second, time.Minute}

// Consumers of each service.
var (
	RegistryRequests = Consumer{Service: "registry", Name: "registry-requests", Stream: StreamRequests.Name,
		FilterSubjects: []string{"tsm.sp.*.req.>"}, OrderingToken: -1, OrderingFields: []string{"seId", "msi"},
		MaxDeliver:  DefaultMaxDeliver,
		Description: "answers get-se-id and get-se-data, resolves the SE of begin-conversation, answers unknown ops"}
	ConversationBegins = Consumer{Service: "conversation", Name: "conversation-begin", Stream: StreamSteps.Name,
		FilterSubjects: []string{"tsm.conv.*.begin"}, OrderingToken: 2, MaxDeliver: DefaultMaxDeliver,
		Description: "opens conversations on SEs resolved by the registry"}
	ConversationRequests = Consumer{Service: "conversation", Name: "conversation-requests", Stream: StreamRequests.Name,
		FilterSubjects: []string{SPRequest("*", OpSendScript), SPRequest("*", OpEndConversation)}, OrderingToken: 2,
		OrderingFields: []string{"conversationId"}, MaxDeliver: DefaultMaxDeliver,
		Description: "accepts scripts into open conversations and ends conversations"}
	ConversationScriptCompleted = Consumer{Service: "conversation", Name: "conversation-script-completed",
		Stream: StreamSteps.Name, FilterSubjects: []string{"tsm.script.*.completed"}, OrderingToken: 2,
		MaxDeliver: DefaultMaxDeliver, Description: "answers send-script when its script has run"}
	ConversationProcedures = Consumer{Service: "conversation", Name: "conversation-procedure", Stream: StreamSteps.Name,
		FilterSubjects: []string{"tsm.conv.*.procedure"}, OrderingToken: 2, MaxDeliver: DefaultMaxDeliver,
		Description: "runs pre-personalize, the service life cycle, lost/stolen and audits as durable procedures"}
	RegistryContent = Consumer{Service: "registry", Name: "registry-content", Stream: StreamSteps.Name,
		FilterSubjects: []string{"tsm.conv.*.content"}, OrderingToken: 2, MaxDeliver: DefaultMaxDeliver,
		Description: "applies content changes (SP SDs, service instances, audits) to the registry's content model"}
	ScriptRouterRequested = Consumer{Service: "scriptrouter", Name: "scriptrouter-requested", Stream: StreamSteps.Name,
		FilterSubjects: []string{"tsm.script.*.requested"}, OrderingToken: 2, MaxDeliver: DefaultMaxDeliver,
		Description: "validates and authorizes scripts, routes them to the SE's MNO adapter"}
	ScriptRouterExecuted = Consumer{Service: "scriptrouter", Name: "scriptrouter-executed", Stream: StreamSteps.Name,
		FilterSubjects: []string{"tsm.se.*.executed"}, OrderingToken: 2, MaxDeliver: DefaultMaxDeliver,
		Description: "collects response APDUs and failures of executed scripts"}
	ScriptRouterRegistry = Consumer{Service: "scriptrouter", Name: "scriptrouter-registry", Stream: StreamRegistry.Name,
		FilterSubjects: []string{"tsm.reg.sp.*", "tsm.reg.svc.*.*", "tsm.reg.se.*"}, OrderingToken: -1,
		MaxDeliver: DefaultMaxDeliver, Description: "projects what each SP owns (SD and instance AIDs) for script authorization"}
	SESimulatorExecute = Consumer{Service: "sesimulator", Name: "sesimulator-execute", Stream: StreamSteps.Name,
		FilterSubjects: []string{"tsm.se.*.execute"}, OrderingToken: 2, MaxDeliver: DefaultMaxDeliver,
		Description: "executes APDUs on the simulated cards"}
	SESimulatorRegistry = Consumer{Service: "sesimulator", Name: "sesimulator-registry", Stream: StreamRegistry.Name,
		FilterSubjects: []string{"tsm.reg.se.*"}, OrderingToken: 3, MaxDeliver: DefaultMaxDeliver,
		Description: "manufactures a card for every enrolled SE"}
)

// MNOAdapterDeliver is the consumer of the adapter instance for one MNO.
func MNOAdapterDeliver(mnoID string) Consumer {
	return Consumer{Service: "mnoadapter", Name: "mnoadapter-" + mnoID, Stream: StreamSteps.Name,
		FilterSubjects: []string{"tsm.mno." + mnoID + ".*.deliver"}, OrderingToken: 3, MaxDeliver: DefaultMaxDeliver,
		Description: "delivers scripts over the OTA bearer of MNO " + mnoID}
}

// MNOAdapterRegistry follows the MNO's own record (latency, limits).
func MNOAdapterRegistry(mnoID string) Consumer {
	return Consumer{Service: "mnoadapter", Name: "mnoadapter-" + mnoID + "-registry", Stream: StreamRegistry.Name,
		FilterSubjects: []string{RegistryMNO(mnoID)}, OrderingToken: -1, MaxDeliver: DefaultMaxDeliver,
		Description: "follows the registry record of MNO " + mnoID}
}
