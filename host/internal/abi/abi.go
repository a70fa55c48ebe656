// Package abi holds the numbers of the push2 ABI, version 1, for the host:
// what a WebAssembly module and the host agree on, and nothing an embedder
// of package host needs.
package abi

// The numbers of the push2 ABI, version 1. Each constant is defined in
// sdk/ABI.md, in the section named next to it; the SDKs repeat them. Within
// version 1 numbers are only ever added, never changed or reused
// (sdk/ABI.md §10 "Versioning").

// Version is the major ABI version this host speaks: the one a module
// declares by importing push2.abi_v1 (sdk/ABI.md §2 "Version gate").
const Version = 1

// Revision counts the additive revisions of ABI v1 this host implements;
// push2.abi_v1 returns it (sdk/ABI.md §10). Revision 1 added push2.facts
// and push2.fields, the batched reads of §7.
const Revision = 1

// ImportModule is the import namespace of every host function (sdk/ABI.md §1
// "Import namespace").
const ImportModule = "push2"

// Status codes returned by host functions: a non-negative value is a size or
// a value, a negative one is one of these (sdk/ABI.md §5 "Status enum").
const (
	StatusOK          int32 = 0
	StatusNotFound    int32 = -1 // no such element, attribute, child or field
	StatusInvalid     int32 = -2 // bad handle, id, path, pointer or encoding
	StatusTooLarge    int32 = -3 // output or table limit reached
	StatusFailed      int32 = -4 // the operation failed (crypto: bad key…)
	StatusUnavailable int32 = -5 // not in this kind of call, or not configured
	StatusRateLimited int32 = -6 // log line dropped by the rate limiter
)

// Predefined element handles (sdk/ABI.md §6 "Reading the stanza").
const (
	HandleStanza  int32 = 1 // the stanza as the server saw it
	HandleMatch   int32 = 2 // the registration's <match/>
	HandleSend    int32 = 3 // the registration's <send/>
	HandleMessage int32 = 4 // the message the facts describe (carbons unwrapped)
	FirstDynamic  int32 = 8 // the first handle a call hands out; those below are reserved
)

// Fact ids for push2.fact (sdk/ABI.md §7 "Facts and context").
const (
	FactKind              int32 = 1 // 0 other, 1 message, 2 presence, 3 iq
	FactHasBody           int32 = 2
	FactEncrypted         int32 = 3
	FactCall              int32 = 4 // 0 none, 1 propose, 2 retract, 3 other
	FactChatState         int32 = 5
	FactReceipt           int32 = 6
	FactCorrection        int32 = 7
	FactSentCarbon        int32 = 8
	FactHeadline          int32 = 9
	FactError             int32 = 10
	FactReflection        int32 = 11
	FactGroupchat         int32 = 12
	FactInvite            int32 = 13
	FactMention           int32 = 14
	FactReply             int32 = 15
	FactContentOnly       int32 = 16
	FactImportant         int32 = 17
	FactSuggestedPriority int32 = 18 // 1 low, 2 normal, 3 high
	FactTrigger           int32 = 19 // 0 unknown, 1 offline … 5 groupchat
	FactDecisionPriority  int32 = 20 // send calls only: 1 low, 2 normal, 3 high
	FactDecisionVoIP      int32 = 21 // send calls only
	FactBudget            int32 = 22 // send calls only: bytes the output may take
)

// Field ids for push2.field (sdk/ABI.md §7).
const (
	FieldAccount   int32 = 1
	FieldTrigger   int32 = 2
	FieldArchiveID int32 = 3
	FieldNick      int32 = 4
	FieldFrom      int32 = 5
	FieldChat      int32 = 6
	FieldBody      int32 = 7
	FieldType      int32 = 8
	FieldProfile   int32 = 9
	FieldArchiveBy int32 = 10
)

// Bits of the word push2_match returns (sdk/ABI.md §4 "Match result").
const (
	MatchPush          = 1 << 0
	MatchPriorityShift = 1
	MatchPriorityMask  = 3 << MatchPriorityShift // 0 default, 1 low, 2 normal, 3 high
	MatchVoIP          = 1 << 3
	MatchKnownBits     = MatchPush | MatchPriorityMask | MatchVoIP
)

// Log levels for push2.log (sdk/ABI.md §8 "Logging").
const (
	LogDebug int32 = 0
	LogInfo  int32 = 1
	LogWarn  int32 = 2
	LogError int32 = 3
)

// Base64 variants for push2.base64_encode (sdk/ABI.md §9 "Crypto").
const (
	Base64Std    int32 = 0 // RFC 4648 §4, padded
	Base64RawURL int32 = 1 // RFC 4648 §5, unpadded
)

// Fixed limits of ABI v1 (sdk/ABI.md §11 "Limits").
const (
	MaxReasonBytes   = 256  // longer reasons are cut at a rune boundary
	MaxLogBytes      = 1024 // longer log lines are cut
	MaxArgumentBytes = 8192 // names, paths, keys passed to the host
	MaxHandles       = 1024 // element handles per call
	MaxProfiles      = 16   // profiles one module may describe
	MaxDescribeBytes = 16 << 10
	MaxFactBatch     = 64 // ids one push2.facts call may ask for
)

// Export names (sdk/ABI.md §3 "Exports"), and the WASI reactor and command entry points.
const (
	ExportDescribe   = "push2_describe"
	ExportMatch      = "push2_match"
	ExportSend       = "push2_send"
	ExportValidate   = "push2_validate"
	ExportPrepare    = "push2_prepare"
	ExportInitialize = "_initialize"
	ExportStart      = "_start"
	ExportMemory     = "memory"
)

// WASIModule is the import namespace of WASI preview 1.
const WASIModule = "wasi_snapshot_preview1"

// WASIAllowed is the part of WASI preview 1 a module may import: what Go's
// wasip1 runtime needs, and nothing that reaches a filesystem or a network
// (sdk/ABI.md §12 "WASI").
var WASIAllowed = map[string]bool{
	"args_get": true, "args_sizes_get": true,
	"environ_get": true, "environ_sizes_get": true,
	"clock_res_get": true, "clock_time_get": true,
	"fd_write": true, "fd_close": true,
	"fd_fdstat_get": true, "fd_fdstat_set_flags": true,
	"fd_prestat_get": true, "fd_prestat_dir_name": true,
	"random_get": true, "poll_oneoff": true,
	"proc_exit": true, "sched_yield": true,
}
