# The background worker never waits on an application transaction: while
# one holds an expired entry and a dead worker's entry (and tracked into
# the same topics), the worker resets every other expired status and
# prunes every other dead entry on time, in those topics and others; the
# held rows follow on the first tick after the transaction ends.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use PresenceTest;

presence_node();

connect_db()->do(q{CREATE EXTENSION IF NOT EXISTS presence});

my $l = PresenceTest::Listener->new;
my $admin = connect_db();
my $app = connect_db();
my $now = now_s();
my $until = $now + 1;

$admin->do(q{SELECT presence_worker_start('skip-live', '1 hour')});
$admin->do(q{SELECT presence_worker_start('skip-dead', '1 hour')});
for my $t (qw(skip:a skip:b skip:c)) {
	for my $fd (1, 2) {
		$admin->do(q{SELECT presence_track(?, ?, 'user', worker_id => 'skip-live')}, undef, $t, $fd);
		$admin->do(q{SELECT presence_set_status(?, ?, 'busy', 'soon', ?, 'skip-live')},
			undef, $t, $fd, $until);
		$admin->do(q{SELECT presence_track(?, ?, 'ghost', worker_id => 'skip-dead')}, undef, $t, $fd);
	}
}
$l->drain;

# The application's transaction: tracks into skip:a, then holds the
# expiring entry (skip:a, 1) and the dead worker's (skip:a, 1).
$app->begin_work;
$app->do(q{SELECT presence_track('skip:a', 9, 'app', worker_id => 'skip-live')});
$app->do(q{SELECT 1 FROM tep_presence WHERE topic = 'skip:a' AND fd = 1 FOR UPDATE});

# The dead worker's lease ends now.
$admin->do(q{UPDATE tep_presence_worker SET lease_until = now() - interval '1 s'
             WHERE worker_id = 'skip-dead'});
my $t0 = time;

my @resets = $l->collect(PresenceTest::Listener::match(kind => 'status', state => 'available',
		worker_id => 'skip-live'), 5, $until + 1.5 - time);
is(scalar @resets, 5, 'the 5 expired statuses not held are reset while the transaction is open');
cmp_ok(max_t(@resets) - $until, '<=', 0.7, '  within sweep_interval + 0.5 s of expiry') if @resets == 5;
my @leaves = $l->collect(PresenceTest::Listener::match(kind => 'leave', worker_id => 'skip-dead'),
	5, 2);
is(scalar @leaves, 5, 'the 5 dead entries not held are pruned while the transaction is open');
cmp_ok(max_t(@leaves) - $t0, '<=', 0.6, '  within 3 ticks') if @leaves == 5;
is($admin->selectrow_array(q{SELECT status_state FROM tep_presence
                             WHERE topic = 'skip:a' AND fd = 1 AND worker_id = 'skip-live'}),
	'busy', 'the held expired entry waits');
is($admin->selectrow_array(q{SELECT count(*) FROM tep_presence WHERE worker_id = 'skip-dead'}),
	1, 'the held dead entry waits');
my ($state) = $admin->selectrow_array(q{SELECT wait_event_type FROM pg_stat_activity
                                         WHERE backend_type = 'presence worker'});
isnt($state // '', 'Lock', 'the background worker is not waiting on a lock');

$app->commit;
my $t1 = time;
my $r = $l->wait_for(PresenceTest::Listener::match(kind => 'status', state => 'available',
		worker_id => 'skip-live', topic => 'skip:a', fd => 1), 2);
ok($r, 'after the commit, the held status is reset');
cmp_ok($r->{t} - $t1, '<=', 0.5, '  within 2 ticks') if $r;
$r = $l->wait_for(PresenceTest::Listener::match(kind => 'leave', worker_id => 'skip-dead',
		topic => 'skip:a', fd => 1), 2);
ok($r, 'after the commit, the held dead entry is pruned');
cmp_ok($r->{t} - $t1, '<=', 0.7, '  within 3 ticks') if $r;

$admin->do(q{SELECT presence_worker_stop('skip-live')});
$admin->do(q{DELETE FROM presence_topic_seq WHERE topic LIKE 'skip:%'});
server_log_ok();
done_testing();

sub max_t { my $m = 0; for (@_) { $m = $_->{t} if $_->{t} > $m } $m }
