-- @include "prologue"
fail("unavailable", "topic_visibility is not implemented yet")
