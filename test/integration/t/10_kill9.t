# The background worker killed with -9: the postmaster crash-restarts the
# server, the worker is back within 5 s and keeps working: the entries of
# connections the restart killed are pruned, leased entries are kept,
# expiry and pruning work again.  The LISTEN connection reconnects.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use PresenceTest;

presence_node();

my $l = PresenceTest::Listener->new(retry => 1);
my $admin = connect_db();
my $pid = worker_pid($admin);
ok($pid, "worker pid $pid");

my $victim = connect_db();
my $victim_wid = $victim->selectrow_array('SELECT presence_worker_start()');
$victim->selectrow_array(q{SELECT presence_track('k9:room', ?, 'user:v')}, undef, $_) for 1 .. 2;
$admin->selectrow_array(q{SELECT presence_worker_start('k9-leased', '1 hour')});
$admin->selectrow_array(q{SELECT presence_track('k9:room', 10, 'user:l', 'human', '', 'k9-leased')});
my $until = now_s() + 2;
$admin->selectrow_array(q{SELECT presence_set_status('k9:room', 10, 'busy', 'crash', ?, 'k9-leased')}, undef, $until);
$l->pause(0.3);
$l->drain;

my $t0 = time;
kill 'KILL', $pid;

# Reconnect once the restart has killed every session (connecting earlier
# could reach the server before the postmaster noticed the kill), then wait
# for the new worker.
ok(wait_disconnected($admin, 10), 'the crash restart ends every session');
$admin = connect_retry(timeout => 30);
my $t_conn = time;
$l->connect;
my $new = wait_worker_pid($admin, $t0 + 10 - time, $pid);
my $back = time - $t0;
ok($new && $new != $pid, 'a new presence worker runs (pid ' . ($new // 'none') . ')');
diag(sprintf 'worker back %s ms after kill -9 (server accepting connections after %s ms)', ms($back), ms($t_conn - $t0));
cmp_ok($back, '<=', 5, 'back within 5 s');
is($admin->selectrow_array('SELECT backend_type FROM pg_stat_activity WHERE pid = ?', undef, $new),
	'presence worker', "  under backend_type 'presence worker'");

# What it finds after the restart.
my $deadline = $t0 + 5 + 0.4;
my $left;
while (1) {
	$left = $admin->selectrow_array('SELECT count(*) FROM tep_presence WHERE worker_id = ?', undef, $victim_wid);
	last if $left == 0 || time > $deadline;
	$l->pause(0.05);
}
is($left, 0, 'the entries of a connection killed by the restart are pruned (within 5 s + 2 x sweep_interval)');
$deadline = ($until > $t0 + $back ? $until : $t0 + $back) + 0.7;
my $state;
while (1) {
	$state = $admin->selectrow_array(q{SELECT status_state FROM tep_presence WHERE worker_id = 'k9-leased' AND fd = 10});
	last if ($state // '') eq 'available' || time > $deadline;
	$l->pause(0.05);
}
is($state, 'available', 'a status that expired across the restart is reset');
is($admin->selectrow_array(q{SELECT count(*) FROM tep_presence WHERE worker_id = 'k9-leased'}), 1,
	'the leased worker keeps its entry');

# It keeps working: expiry and pruning, seen through the new LISTEN connection.
expiry_and_prune_work(listener => $l, admin => $admin, when => 'after kill -9', topic => 'k9:room', fd => 20,
	start => 1);

my $log = log_since(0);
my @started = $log =~ /^.*\[$new\] presence worker LOG:  presence worker started.*$/mg;
is(scalar @started, 1, 'the new worker logged one start line');
like($log, qr/background worker "presence worker" \(PID $pid\) was terminated by signal 9/,
	'the log shows the deliberate kill');

$admin->selectrow_array(q{SELECT presence_worker_stop('k9-leased')});
server_log_ok(kills => [$pid]);
done_testing;
