package model

import (
	"fmt"
	"strconv"
	"strings"
)

// DecisionLogKind is which decisions a DecisionLogMode logs.
type DecisionLogKind uint8

// Decision log kinds. The zero value is DecisionLogsOn.
const (
	// DecisionLogsOn logs every decision (the default).
	DecisionLogsOn DecisionLogKind = iota
	// DecisionLogsOff logs none.
	DecisionLogsOff
	// DecisionLogsDenied logs the decisions that did not allow the
	// request, and under dry run those that would not have.
	DecisionLogsDenied
	// DecisionLogsSample logs one decision in N, allowed or denied alike.
	DecisionLogsSample
)

// DecisionLogKinds is the number of kinds (for arrays indexed by kind).
const DecisionLogKinds = 4

var decisionLogKindNames = [DecisionLogKinds]string{"on", "off", "denied", "sample"}

// String is the kind's name: on, off, denied or sample.
func (k DecisionLogKind) String() string {
	if int(k) < len(decisionLogKindNames) {
		return decisionLogKindNames[k]
	}
	return "unknown"
}

// MaxDecisionLogSample is the largest N of sample:N.
const MaxDecisionLogSample = 1_000_000

// DefaultDecisionLogs is a gateway's decision_logs when it sets none.
const DefaultDecisionLogs = "on"

// DecisionLogModeRule describes the accepted values in error messages.
const DecisionLogModeRule = "on, off, denied or sample:N (N from 1 to 1000000: one decision in N is logged)"

// DecisionLogMode is a gateway's decision_logs setting, parsed: which of
// its decisions its authorizer logs. The zero value is on.
type DecisionLogMode struct {
	Kind DecisionLogKind
	// N is DecisionLogsSample's rate, 1 to MaxDecisionLogSample: one
	// decision in N is logged. Zero for the other kinds.
	N uint32
}

// ParseDecisionLogMode reads "on", "off", "denied" or "sample:N" (N a
// decimal integer from 1 to MaxDecisionLogSample, without sign or
// leading zeros), so that String gives back the same text.
func ParseDecisionLogMode(s string) (DecisionLogMode, error) {
	switch s {
	case "on":
		return DecisionLogMode{Kind: DecisionLogsOn}, nil
	case "off":
		return DecisionLogMode{Kind: DecisionLogsOff}, nil
	case "denied":
		return DecisionLogMode{Kind: DecisionLogsDenied}, nil
	}
	if rest, ok := strings.CutPrefix(s, "sample:"); ok {
		n, err := strconv.ParseUint(rest, 10, 32)
		if err == nil && n >= 1 && n <= MaxDecisionLogSample && strconv.FormatUint(n, 10) == rest {
			return DecisionLogMode{Kind: DecisionLogsSample, N: uint32(n)}, nil
		}
		return DecisionLogMode{}, fmt.Errorf("decision log mode %q: N must be an integer from 1 to %d", s, MaxDecisionLogSample)
	}
	return DecisionLogMode{}, fmt.Errorf("decision log mode %q: want %s", s, DecisionLogModeRule)
}

// String is the mode as ParseDecisionLogMode reads it.
func (m DecisionLogMode) String() string {
	if m.Kind == DecisionLogsSample {
		return "sample:" + strconv.FormatUint(uint64(m.N), 10)
	}
	return m.Kind.String()
}
