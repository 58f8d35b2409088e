# The worker runs, is visible under its own backend_type, logs one start
# line, and idles without errors while the extension is not yet created.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use PresenceTest;

# A cluster without the extension: this file creates it.
presence_node(create_extension => 0);

my $dbh = connect_db();

my $pid = wait_worker_pid($dbh, 10);
ok($pid, "presence worker is running (pid " . ($pid // 'none') . ")");

my $row = $dbh->selectrow_hashref(
	"SELECT backend_type, datname, wait_event_type FROM pg_stat_activity WHERE pid = ?",
	undef, $pid);
is($row->{backend_type}, 'presence worker', "backend_type is 'presence worker'");
is($row->{datname}, 'postgres', 'it serves presence.database (default postgres)');

my ($ext) = $dbh->selectrow_array(
	"SELECT count(*) FROM pg_extension WHERE extname = 'presence'");
is($ext, 0, 'the extension is not created yet');

# Idle in a database without the extension: ~10 ticks, no error, no restart.
my $off = log_offset();
sleep 2;
is(worker_pid($dbh), $pid, 'the worker idles (same pid) while the extension is missing');
is_deeply([worker_log_problems(log_since($off))], [], 'no error or crash in the log while idling');

$dbh->do('CREATE EXTENSION presence');
ok(1, 'CREATE EXTENSION presence');

# It starts working: an entry with no worker row is pruned by itself.
my $l = PresenceTest::Listener->new;
$dbh->do(q{INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts)
           VALUES ('w01-orphan', 'w01:room', 1, 'user:1', 0)});
my $t0 = time;
my $leave = $l->wait_for(PresenceTest::Listener::match(kind => 'leave', worker_id => 'w01-orphan'), 3);
ok($leave, 'after CREATE EXTENSION the worker works (orphan entry pruned)')
  and diag(sprintf 'orphan prune after CREATE EXTENSION: %s ms', ms($leave->{t} - $t0));

my $log = log_since(0);
my @started = $log =~ /^.*presence worker started.*$/mg;
is(scalar @started, 1, 'exactly one "presence worker started" line so far (not one per tick)');
like($started[0] // '', qr/\[$pid\] presence worker LOG:  presence worker started for database "postgres"/,
	'the start line comes from the worker, names its database');

is(worker_pid($dbh), $pid, 'still the same worker process');
server_log_ok();
done_testing;
