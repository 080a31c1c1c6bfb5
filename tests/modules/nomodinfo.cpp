// A shared object that is not a udrv module at all.
extern "C" int test_nomodinfo_answer() { return 42; }
