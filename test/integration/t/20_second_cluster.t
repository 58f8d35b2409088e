# A second kind of cluster.  First without preloading: no worker, the SQL
# functions work and sweep/prune are done by hand.  Then restarted with
# the library preloaded and presence.database = 'appdb', a database
# without the extension: the worker idles there without errors (and leaves
# other databases alone); after CREATE EXTENSION in appdb it works.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use PresenceTest;

# Not preloaded, no presence.* settings, no extension yet.
my $node = presence_node('second', preload => 0, create_extension => 0);
my %c2 = (cluster => 'second');

# A. Not preloaded.
my $admin = connect_db(%c2);
is(worker_pid($admin), undef, 'not preloaded: no presence worker');
my $created = eval { $admin->do('CREATE EXTENSION presence'); 1 };
ok($created, 'not preloaded: CREATE EXTENSION presence works') or diag("CREATE EXTENSION failed: $@");
SKIP: {
	skip 'the extension could not be created without preloading', 9 unless $created;
	my $l = PresenceTest::Listener->new(%c2);
	my $app = connect_db(%c2);
	my $wid = $app->selectrow_array('SELECT presence_worker_start()');
	$app->selectrow_array(q{SELECT presence_track('plain:room', ?, 'user:1')}, undef, $_) for 1 .. 2;
	my $base = now_s();
	ok($app->selectrow_array(q{SELECT presence_set_status('plain:room', 1, 'busy', 'x', ?)}, undef, $base + 1),
		'track and set_status work');
	my $victim = connect_db(%c2);
	my $vwid = $victim->selectrow_array('SELECT presence_worker_start()');
	$victim->selectrow_array(q{SELECT presence_track('plain:room', 9, 'user:9')});
	$admin->selectrow_array('SELECT pg_terminate_backend(?, 5000)', undef, $victim->{pg_pid});
	$l->pause($base + 2.5 - time);
	is(scalar(grep { my $d = diff_of($_); $d->{kind} eq 'leave' || ($d->{kind} eq 'status' && $d->{state} eq 'available') } $l->drain), 0,
		'without the worker nothing expires or is pruned by itself');
	is($app->selectrow_array(q{SELECT status_state FROM presence_find_entry('plain:room', 1)}), 'busy', '  the status is still busy');
	is($admin->selectrow_array('SELECT presence_sweep_expired_status()'), 1, 'presence_sweep_expired_status() by hand resets it');
	ok($l->wait_for(PresenceTest::Listener::match(kind => 'status', fd => 1, state => 'available'), 2), '  with a status diff');
	is($admin->selectrow_array('SELECT presence_prune_dead_workers()'), 1, 'presence_prune_dead_workers() by hand prunes the dropped connection');
	ok($l->wait_for(PresenceTest::Listener::match(kind => 'leave', worker_id => $vwid), 2), '  with a leave diff');
	is($admin->selectrow_array('SELECT presence_prune_dead_workers()'), 0, '  the live connection is left alone');
	is($app->selectrow_array('SELECT presence_worker_stop()'), 2, '  presence_worker_stop() works');
	$app->disconnect;
	$victim->disconnect;
	$l->dbh->disconnect;
}
$admin = connect_retry(%c2) unless $admin->ping;

# B. Preloaded, serving appdb (no extension there yet).
$admin->do('CREATE DATABASE appdb');
$admin->disconnect;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'presence'\npresence.database = 'appdb'\npresence.sweep_interval = '200ms'\n");
my $off = log_offset('second');
ok(eval { $node->restart; 1 }, 'restarted with the library preloaded, presence.database = appdb')
  or BAIL_OUT("restart failed: $@");
$admin = connect_retry(%c2);
my $pid = wait_worker_pid($admin, 5);
ok($pid, "the worker runs (pid " . ($pid // 'none') . ')');
is($admin->selectrow_array('SELECT datname FROM pg_stat_activity WHERE pid = ?', undef, $pid), 'appdb',
	'  connected to appdb');

# The extension exists in postgres (not served): its statuses are left alone.
$admin->do('CREATE EXTENSION IF NOT EXISTS presence');
my $pg_app = connect_db(%c2);
my $base;
$pg_app->selectrow_array('SELECT presence_worker_start()');
$pg_app->selectrow_array(q{SELECT presence_track('other:room', 1, 'user:1')});
$base = now_s();
$pg_app->selectrow_array(q{SELECT presence_set_status('other:room', 1, 'busy', '', ?)}, undef, $base + 1);
sleep($base + 2.5 - time);
is($pg_app->selectrow_array(q{SELECT status_state FROM presence_find_entry('other:room', 1)}), 'busy',
	'a database the worker does not serve is left alone');
is(worker_pid($admin), $pid, 'in appdb (no extension) the worker idles: same process after ~10 ticks');
is_deeply([worker_log_problems(log_since($off, 'second'))], [], '  no error in the log');

my $appdb = connect_db(%c2, db => 'appdb');
$appdb->do('CREATE EXTENSION presence');
my $l = PresenceTest::Listener->new(%c2, db => 'appdb');
expiry_and_prune_work(listener => $l, admin => $appdb, when => 'after CREATE EXTENSION in appdb',
	topic => 'app:room', fd => 1, start => 1, connect => { %c2, db => 'appdb' });

my $log = log_since($off, 'second');
is(scalar(() = $log =~ /presence worker started for database "appdb"/g), 1, 'one start line since the restart');
is(worker_pid($admin), $pid, 'same worker process throughout');
is_deeply([worker_log_problems($log)], [], 'no worker error or crash in the second cluster\'s log');
server_log_ok(cluster => 'second');
done_testing;
