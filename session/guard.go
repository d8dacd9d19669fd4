package session

import (
	"github.com/tenantproxy/tenantproxy/policy"
)

// PolicyGuard adapts the statement guard of package policy to the relay: it turns the guard's analysis of
// a message into what the session does — refuse, emulate, pin, or track settings.
type PolicyGuard struct {
	G *policy.Guard
}

// Check implements Guard.
func (pg PolicyGuard) Check(sql string, profile string, t *Tenant, parse bool) Verdict {
	p, err := policy.ParseProfile(profile)
	if err != nil {
		return Verdict{Refused: true, Code: policy.SQLStatePolicy, Message: "tenantproxy: the user's profile is unknown, so no statement may run"}
	}
	var a policy.Analysis
	if parse {
		a = pg.G.CheckParse(sql, p, t.AllowedSchemas)
	} else {
		a = pg.G.Check(sql, p, t.AllowedSchemas)
	}
	if a.Refused {
		return Verdict{Refused: true, Code: a.SQLState, Message: a.Reason}
	}
	if len(a.Effects) == 0 {
		return Verdict{}
	}
	var v Verdict
	for _, e := range a.Effects {
		switch e.Kind {
		case policy.EffectSetTracked:
			st := Setting{Name: e.Name, Reset: e.Reset}
			if e.Name == "search_path" {
				st.Values = e.List
			} else {
				st.Values = []string{e.Value}
			}
			v.Sets = append(v.Sets, st)
		case policy.EffectDiscardAll:
			v.Emulate = EmulateDiscardAll
		case policy.EffectResetAll:
			v.Emulate = EmulateResetAll
		case policy.EffectTempTable:
			if !e.Transient {
				v.Pin = "temporary object " + e.Name
			}
		case policy.EffectHoldCursor:
			v.Pin = "WITH HOLD cursor " + e.Name
		case policy.EffectListen:
			v.Pin = "LISTEN " + e.Name
		case policy.EffectAdvisoryLock:
			v.Pin = "session advisory lock (" + e.Name + ")"
		case policy.EffectPrepare:
			v.Pin = "SQL PREPARE " + e.Name
		case policy.EffectDeallocate:
			if e.Name == "" && a.Statements == 1 {
				v.Emulate = EmulateDeallocateAll
			}
		}
	}
	return v
}
