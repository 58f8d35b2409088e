# presence.database names a database that does not exist yet.  The worker
# would FATAL on connecting (and, restarted every 2 s, FATAL again); the
# launcher instead logs one WARNING naming presence.database and how often
# it looks again, and starts the worker once the database exists, without
# a server restart.  The same after the database is dropped (WITH FORCE
# ends the worker) and created again.  On a second cluster, a worker
# stopped with pg_terminate_backend stays stopped, launcher and all.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use PresenceTest;

presence_node(conf => ["presence.database = 'later'"], create_extension => 0);
my $admin = connect_db();

my $missing = qr/^.* \[(\d+)\] presence launcher WARNING:  presence: database "later" \(presence\.database\) does not exist$/m;

# Wait for the WARNING (the launcher starts with the server), then watch
# for longer than the retry interval (5 s) and three of the old restarts.
my $deadline = time + 10;
sleep 0.1 until log_since(0) =~ $missing || time > $deadline;
my $offset = log_offset();
sleep 6;
my $log = log_since(0);
my @warnings = $log =~ /$missing/g;
is(scalar @warnings, 1, 'one WARNING while the database is missing, not one per look');
like($log, qr/presence\.database\) does not exist\n.*DETAIL:  The presence worker starts once it exists; looking again every 5 s\./,
	'  it says how often the launcher looks again');
unlike($log, qr/FATAL/, 'no FATAL in the log');
unlike($log, qr/background worker "presence (worker|launcher)" \(PID \d+\) exited/, 'no worker exits (no restart loop)');
is(log_since($offset), '', 'nothing logged over the 6 s after the WARNING');
is(worker_pid($admin), undef, 'no presence worker runs meanwhile');
is_deeply($admin->selectall_arrayref(
		q{SELECT coalesce(datname, '-') FROM pg_stat_activity WHERE backend_type = 'presence launcher'}),
	[['-']], "one launcher, connected to no database, under backend_type 'presence launcher'");

# The database and the extension appear: the worker starts there and works.
sub works_in_later {
	my ($when) = @_;
	my $db = connect_db(db => 'later');
	$db->do('CREATE EXTENSION presence');
	my $pid = wait_worker_pid($admin, 15);
	ok($pid, "$when: the worker starts without a server restart");
	is($admin->selectrow_array('SELECT datname FROM pg_stat_activity WHERE pid = ?', undef, $pid),
		'later', "$when:   connected to database later");
	$db->selectrow_array(q{SELECT presence_track('room', 1, 'user:1')});
	$db->selectrow_array(q{SELECT presence_set_status('room', 1, 'busy', '', ?)}, undef, now_s() + 1);
	my ($state, $end) = ('', time + 15);
	while (time < $end) {
		$state = $db->selectrow_array(q{SELECT status_state FROM tep_presence WHERE fd = 1});
		last if $state eq 'available';
		sleep 0.1;
	}
	is($state, 'available', "$when:   it resets an expired status there");
	$db->disconnect;
	return $pid;
}

$admin->do('CREATE DATABASE later');
my $first = works_in_later('after CREATE DATABASE');

# DROP DATABASE ... WITH (FORCE) ends the worker; the launcher warns again
# (once) and waits; the database comes back and so does the worker.
$offset = log_offset();
$admin->do('DROP DATABASE later WITH (FORCE)');
$deadline = time + 15;
sleep 0.1 until log_since($offset) =~ $missing || time > $deadline;
like(log_since($offset), $missing, 'after DROP DATABASE: the WARNING again');
is(worker_pid($admin), undef, '  and no worker');
$admin->do('CREATE DATABASE later');
my $second = works_in_later('after the database is created again');
isnt($second, $first, '  a new worker process');

$log = log_since(0);
@warnings = $log =~ /$missing/g;
is(scalar @warnings, 2, 'two WARNINGs in all, one per absence');
server_log_ok(starts => 2, launcher_warnings => $missing);

presence_node('stop');
my $stop = connect_db(cluster => 'stop');
my $pid = wait_worker_pid($stop, 10);
ok($pid, 'second cluster: the worker runs');
$stop->selectrow_array('SELECT pg_terminate_backend(?)', undef, $pid);
my $n_launchers = sub {
	$stop->selectrow_array(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'presence launcher'});
};
$deadline = time + 10;
sleep 0.1 while $n_launchers->() > 0 && time < $deadline;
is($n_launchers->(), 0, '  after pg_terminate_backend on the worker, the launcher exits');
sleep 3;
is(worker_pid($stop), undef, '  and no worker is started again (the old restart came after 2 s)');
is_deeply([worker_log_problems(log_since(0, 'stop'))], [], '  with nothing worse than a LOG line');
done_testing;
