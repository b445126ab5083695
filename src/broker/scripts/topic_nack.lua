-- @include "prologue"
fail("unavailable", "topic_nack is not implemented yet")
