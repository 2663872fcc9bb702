package srvkit

import "sync"

// Room is the one broadcast room of a benchmark server: a set of members that
// a message is written to. Join and Leave are O(1); Each visits the members
// under a read lock, so a broadcast does not copy the member list.
type Room[T comparable] struct {
	mu      sync.RWMutex
	members []T
	index   map[T]int
}

// NewRoom returns an empty room.
func NewRoom[T comparable]() *Room[T] {
	return &Room[T]{index: make(map[T]int)}
}

// Join adds m to the room.
func (r *Room[T]) Join(m T) {
	r.mu.Lock()
	if _, ok := r.index[m]; !ok {
		r.index[m] = len(r.members)
		r.members = append(r.members, m)
	}
	r.mu.Unlock()
}

// Leave removes m from the room.
func (r *Room[T]) Leave(m T) {
	r.mu.Lock()
	if i, ok := r.index[m]; ok {
		last := len(r.members) - 1
		r.members[i] = r.members[last]
		r.index[r.members[i]] = i
		var zero T
		r.members[last] = zero
		r.members = r.members[:last]
		delete(r.index, m)
	}
	r.mu.Unlock()
}

// Each calls f for every member.
func (r *Room[T]) Each(f func(T)) {
	r.mu.RLock()
	for _, m := range r.members {
		f(m)
	}
	r.mu.RUnlock()
}

// Len is the number of members.
func (r *Room[T]) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.members)
}
