//! TODO(skeleton): filled in by the module owner.
