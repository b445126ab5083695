-- @include "prologue"
fail("unavailable", "topic_publish is not implemented yet")
