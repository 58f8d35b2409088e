# The main cluster's server log at the end: one "presence worker started"
# line per start, no restart other than the deliberate kill -9, no worker
# error, and no crash except that kill.
use strict;
use warnings;
use Test::More;
use PresenceTest;

my $dbh = connect_db();
my @kills = state_file_lines('deliberate_kills');
my $log = log_since(0);
my @lines = split /\n/, $log;

my @started = grep { /presence worker started/ } @lines;
my %start_pids = map { /\[(\d+)\] presence worker LOG:  presence worker started/ ? ($1 => 1) : () } @started;
my %worker_pids = map { /\[(\d+)\] presence worker / ? ($1 => 1) : () } @lines;
$worker_pids{ worker_pid($dbh) // 0 } = 1;
delete $worker_pids{0};
is(scalar @started, scalar(keys %start_pids), 'each start line comes from a different worker process (one per start)');
is_deeply([sort keys %start_pids], [sort keys %worker_pids], 'every worker process logged exactly one start line');
is(scalar @started, 1 + @kills, 'starts: the first + one per deliberate kill -9 (' . scalar(@kills) . '), no other restart');
diag("presence worker starts: " . scalar @started);

my @errors = grep { / presence worker (ERROR|FATAL|PANIC|WARNING):/ } @lines;
is_deeply(\@errors, [], 'the worker never logged an error');
my @exits = grep { /background worker "presence worker" \(PID (\d+)\) exited/ } @lines;
is_deeply(\@exits, [], 'the worker never exited on its own');

# test/lib/cluster.sh's cluster_log_has_crash, minus the deliberate kill.
my $kill_re = join '|', map { quotemeta } @kills;
my @crash = grep {
	/terminated by signal|was terminated|server process .* exited with exit code [^01]|PANIC/
	  && !(@kills && /background worker "presence worker" \(PID (?:$kill_re)\) was terminated by signal 9: Killed/)
} @lines;
is_deeply(\@crash, [], 'no crash in the server log except the deliberate kill -9');
ok(worker_pid($dbh), 'the worker is still running at the end');
done_testing;
