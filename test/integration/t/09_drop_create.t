# DROP EXTENSION / CREATE EXTENSION while the worker runs (and while it
# has work): no crash, no error, same process, and it resumes: expiry and
# pruning work again after CREATE.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use PresenceTest;

presence_node();

my $l = PresenceTest::Listener->new;
my $ddl = connect_db();
my $app = connect_db();
my $pid = worker_pid($ddl);
my $off = log_offset();

my $app_wid = $app->selectrow_array('SELECT presence_worker_start()');
$app->selectrow_array(q{SELECT presence_track('dc:room', 1, 'user:1')});

# 1. Slow: drop, let it idle for ~10 ticks, create.
$ddl->do('DROP EXTENSION presence');
$l->pause(2);
is(worker_pid($ddl), $pid, 'after DROP EXTENSION the worker idles (same process)');
is_deeply([worker_log_problems(log_since($off))], [], '  no error or crash while the extension is gone');
$ddl->do('CREATE EXTENSION presence');

# The app session's cached state must not survive the DROP either.
my $ok = eval { $app->selectrow_array('SELECT presence_worker_start()'); 1 };
ok($ok, 'an app session from before the DROP can register again after CREATE') or diag($@);
my $base = now_s();
$ok = eval {
	$app->selectrow_array(q{SELECT presence_track('dc:room', 1, 'user:1')});
	$app->selectrow_array(q{SELECT presence_set_status('dc:room', 1, 'busy', 'x', ?)}, undef, $base + 1);
	1;
};
ok($ok, '  and track / set_status') or diag($@);
my $r = $l->wait_for(PresenceTest::Listener::match(kind => 'status', topic => 'dc:room', state => 'available'),
	$base + 1 + 0.7 + 1 - time);
ok($r, 'after CREATE EXTENSION expiry works again') and do {
	my $lat = $r->{t} - ($base + 1);
	diag(sprintf 'reset latency %s ms (after DROP/CREATE EXTENSION)', ms($lat));
	cmp_ok($lat, '<=', 0.7, '  within sweep_interval + 0.5 s');
};

# 2. Hammer: 10 ms ticks, 25 DROP/CREATE rounds, each leaving the worker
# work to do (expired statuses and orphan entries) when the next DROP comes.
set_gucs($ddl, 'presence.sweep_interval' => '10ms');
$l->pause(0.3);
my ($rounds, $ddl_errors) = (0, 0);
for my $i (1 .. 25) {
	my $done = eval {
		$ddl->do('DROP EXTENSION presence');
		$l->pause(rand(0.03));
		$ddl->do('CREATE EXTENSION presence');
		$ddl->do(q{INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts,
		               status_state, status_until)
		           SELECT 'dc-orphan', 'dc:hammer:' || (g % 5), g, 'user:x', 0, 'busy', 1
		             FROM generate_series(1, 300) AS g});
		1;
	};
	$ddl_errors++ unless $done;
	diag("round $i: $@") unless $done;
	$rounds++;
	$l->pause(rand(0.05));
}
is($ddl_errors, 0, "$rounds DROP/CREATE rounds under a 10 ms worker: no DDL error");
$l->drain;
reset_gucs($ddl, 'presence.sweep_interval');
$l->pause(1);
is(worker_pid($ddl), $pid, 'the worker survived them (same process, not restarted)');
my @problems = worker_log_problems(log_since($off));
is_deeply(\@problems, [], 'no worker error or crash in the log')
  or diag(scalar(@problems) . " problem line(s):\n" . join("\n", @problems));

# It resumes.
is($ddl->selectrow_array(q{SELECT count(*) FROM tep_presence WHERE worker_id = 'dc-orphan'}), 0,
	'the last round\'s orphan entries were pruned');
expiry_and_prune_work(listener => $l, admin => $ddl, when => 'after the rounds', topic => 'dc:room', fd => 7);

$app->do(q{SELECT presence_worker_stop()});
server_log_ok();
done_testing;
