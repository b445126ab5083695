-- @include "prologue"
fail("unavailable", "topic_unsubscribe is not implemented yet")
