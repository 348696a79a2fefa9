package spool

const childRoleEnv = "SPOOL_TEST_CHILD"

func runChild(role string) int { return 2 }
