// An intrusive doubly linked list of nodes addressed by 32-bit ids.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace streamcache::detail {

/// Entries are addressed by 32-bit ids rather than pointers: the links of a node
/// then cost 8 bytes instead of 16, which is most of the per-entry memory budget.
using NodeId = uint32_t;
inline constexpr NodeId kNoNode = std::numeric_limits<NodeId>::max();

/// The links one list threads through a node. A node in several lists (the
/// eviction policy's and the timer wheel's) carries one hook for each.
struct ListHook {
  NodeId prev = kNoNode;
  NodeId next = kNoNode;
};

/// A doubly linked list threaded through hooks stored in the nodes themselves.
/// `HookOf` is a cheap callable `NodeId -> ListHook&` (typically a lambda holding
/// one pointer). The list owns nothing; it is not thread-safe.
template <class HookOf>
class IntrusiveList {
 public:
  explicit IntrusiveList(HookOf hook_of) : hook_of_(hook_of) {}

  bool empty() const { return head_ == kNoNode; }
  size_t size() const { return size_; }
  NodeId front() const { return head_; }
  NodeId back() const { return tail_; }
  NodeId next(NodeId id) const { return hook_of_(id).next; }
  NodeId prev(NodeId id) const { return hook_of_(id).prev; }

  void push_back(NodeId id) {
    ListHook& h = hook_of_(id);
    h.prev = tail_;
    h.next = kNoNode;
    if (tail_ == kNoNode) {
      head_ = id;
    } else {
      hook_of_(tail_).next = id;
    }
    tail_ = id;
    ++size_;
  }

  void push_front(NodeId id) {
    ListHook& h = hook_of_(id);
    h.prev = kNoNode;
    h.next = head_;
    if (head_ == kNoNode) {
      tail_ = id;
    } else {
      hook_of_(head_).prev = id;
    }
    head_ = id;
    ++size_;
  }

  /// Unlinks `id`, which must be in this list.
  void remove(NodeId id) {
    assert(size_ > 0);
    ListHook& h = hook_of_(id);
    if (h.prev == kNoNode) {
      head_ = h.next;
    } else {
      hook_of_(h.prev).next = h.next;
    }
    if (h.next == kNoNode) {
      tail_ = h.prev;
    } else {
      hook_of_(h.next).prev = h.prev;
    }
    h.prev = h.next = kNoNode;
    --size_;
  }

  /// Links `id` right after `pos`, or at the front when `pos` is kNoNode.
  void insert_after(NodeId pos, NodeId id) {
    if (pos == kNoNode) {
      push_front(id);
      return;
    }
    if (pos == tail_) {
      push_back(id);
      return;
    }
    ListHook& h = hook_of_(id);
    ListHook& p = hook_of_(pos);
    h.prev = pos;
    h.next = p.next;
    hook_of_(p.next).prev = id;
    p.next = id;
    ++size_;
  }

  void move_to_back(NodeId id) {
    if (tail_ == id) return;
    remove(id);
    push_back(id);
  }

  NodeId pop_front() {
    const NodeId id = head_;
    if (id != kNoNode) remove(id);
    return id;
  }

  /// Moves every node of `other` to the back of this list, in order. O(1).
  void splice_back(IntrusiveList& other) {
    if (other.empty()) return;
    if (empty()) {
      head_ = other.head_;
    } else {
      hook_of_(tail_).next = other.head_;
      hook_of_(other.head_).prev = tail_;
    }
    tail_ = other.tail_;
    size_ += other.size_;
    other.head_ = other.tail_ = kNoNode;
    other.size_ = 0;
  }

 private:
  HookOf hook_of_;
  NodeId head_ = kNoNode;
  NodeId tail_ = kNoNode;
  size_t size_ = 0;
};

}  // namespace streamcache::detail
