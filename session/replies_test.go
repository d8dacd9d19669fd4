package session

import (
	"slices"
	"testing"
)

func kinds(q *replyQueue) []opKind {
	var k []opKind
	for _, o := range q.ops[q.head:] {
		k = append(k, o.kind)
	}
	return k
}

func TestReplyQueue(t *testing.T) {
	tests := []struct {
		name string
		run  func(q *replyQueue) []opKind // returns what the test observed, compared with want
		want []opKind
		skip bool // the queue skips to a Sync afterwards
	}{
		{
			name: "replies come in the order requests were pushed",
			run: func(q *replyQueue) []opKind {
				q.push(op{kind: opParse})
				q.push(op{kind: opBind})
				q.push(op{kind: opSync})
				q.pop()
				return kinds(q)
			},
			want: []opKind{opBind, opSync},
		},
		{
			name: "an error in a batch drops every request up to its Sync",
			run: func(q *replyQueue) []opKind {
				for _, k := range []opKind{opParse, opBind, opExecute, opSync, opQuery} {
					q.push(op{kind: k})
				}
				var dropped []opKind
				q.failBatch(func(o *op) { dropped = append(dropped, o.kind) })
				return append(dropped, kinds(q)...)
			},
			want: []opKind{opParse, opBind, opExecute, opSync, opQuery},
		},
		{
			name: "an error with no Sync queued skips what comes until one",
			run: func(q *replyQueue) []opKind {
				q.push(op{kind: opParse})
				q.failBatch(func(*op) {})
				q.push(op{kind: opBind})
				q.push(op{kind: opExecute})
				q.push(op{kind: opSync})
				return kinds(q)
			},
			want: []opKind{opSync},
		},
		{
			name: "a request pushed while skipping reports it was not queued",
			run: func(q *replyQueue) []opKind {
				q.push(op{kind: opParse})
				q.failBatch(func(*op) {})
				if queued, _ := q.push(op{kind: opBind}); queued {
					return []opKind{opBind}
				}
				return nil
			},
			want: nil,
			skip: true,
		},
		{
			name: "ReadyForQuery answers the Sync after the ops the server skipped",
			run: func(q *replyQueue) []opKind {
				for _, k := range []opKind{opBind, opExecute, opSync, opQuery} {
					q.push(op{kind: k})
				}
				h := q.readyFront()
				return append([]opKind{h.kind}, kinds(q)...)
			},
			want: []opKind{opSync, opSync, opQuery},
		},
		{
			name: "an unexpected ReadyForQuery finds no request",
			run: func(q *replyQueue) []opKind {
				q.push(op{kind: opParse})
				if q.readyFront() != nil {
					return []opKind{opParse}
				}
				return kinds(q)
			},
			want: nil,
		},
		{
			name: "synthetic replies go out once they reach the front, in order",
			run: func(q *replyQueue) []opKind {
				q.push(op{kind: opParse})
				q.push(op{kind: opSynthetic, synth: []byte("a")})
				q.push(op{kind: opSynthetic, synth: []byte("b")})
				q.push(op{kind: opSync})
				var out []opKind
				emit := func(o *op) { out = append(out, opKind(o.synth[0])) }
				q.popSynthetic(emit) // the Parse is still owed: nothing goes out
				q.pop()
				q.popSynthetic(emit)
				return append(out, kinds(q)...)
			},
			want: []opKind{'a', 'b', opSync},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q replyQueue
			got := tt.run(&q)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if q.skipping != tt.skip {
				t.Errorf("skipping = %v, want %v", q.skipping, tt.skip)
			}
		})
	}
}

func TestReplyQueueReportsWhenTheBackendBecomesBusy(t *testing.T) {
	var q replyQueue
	if _, wasEmpty := q.push(op{kind: opQuery}); !wasEmpty {
		t.Error("first push: wasEmpty = false")
	}
	if _, wasEmpty := q.push(op{kind: opQuery}); wasEmpty {
		t.Error("second push: wasEmpty = true")
	}
	q.pop()
	q.pop()
	if !q.empty() {
		t.Fatal("not empty after popping everything")
	}
	if _, wasEmpty := q.push(op{kind: opSync}); !wasEmpty {
		t.Error("push after draining: wasEmpty = false")
	}
}

func TestReplyQueuePopOfEmptyIsABug(t *testing.T) {
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("pop of an empty queue did not panic")
		}
	}()
	var q replyQueue
	q.pop()
}

func TestBackendTransitionsOutsideTheMachineAreBugs(t *testing.T) {
	for from := beNew; from < numBeStates; from++ {
		for to := beNew; to < numBeStates; to++ {
			if beTransitions[from][to] {
				continue
			}
			t.Run(from.String()+"->"+to.String(), func(t *testing.T) {
				e := &Engine{l: &loop{}}
				e.pool.e = e
				b := &backend{e: e, state: from}
				if from == beIdle {
					e.pool.idle = []*backend{b}
				}
				defer func() {
					if r := recover(); r == nil {
						t.Fatalf("transition %s -> %s did not panic", from, to)
					}
				}()
				b.setState(to)
			})
		}
	}
}

func TestSessionTransitionsOutsideTheMachineAreBugs(t *testing.T) {
	for from := stIdle; from <= stClosed; from++ {
		for to := stIdle; to <= stClosed; to++ {
			if sessTransitions[from][to] {
				continue
			}
			t.Run(from.String()+"->"+to.String(), func(t *testing.T) {
				s := &Session{state: from}
				defer func() {
					if r := recover(); r == nil {
						t.Fatalf("transition %s -> %s did not panic", from, to)
					}
				}()
				s.setState(to)
			})
		}
	}
}
