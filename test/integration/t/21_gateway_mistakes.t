# The mistakes a gateway makes are refused, not absorbed silently:
# - its dedicated connection ends (terminated): once the background worker
#   has removed its entries, a track, set_status or heartbeat of its id from
#   another connection (its pool) fails with 55000 until
#   presence_worker_start is called again;
# - until_ts in milliseconds, or int8's largest value, is refused (22023);
# - a status set with now() + interval '2 s' (a timestamptz) or an interval
#   expires within two ticks of its time, and not before.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use PresenceTest;

presence_node();

my $interval = 0.2;
my $l = PresenceTest::Listener->new;
my $admin = connect_db();

# Runs a statement; returns its SQLSTATE ('' when it succeeded) and message.
sub try_sql {
	my ($dbh, $sql, @bind) = @_;
	my $ok = eval { $dbh->selectrow_array($sql, undef, @bind); 1 };
	return $ok ? ('', '') : ($dbh->state, $dbh->errstr);
}

# A gateway: its worker bound to a dedicated connection, an entry tracked
# from its pool.
my $dedicated = connect_db();
my $pool = connect_db();
is($dedicated->selectrow_array(q{SELECT presence_worker_start('gw-21')}), 'gw-21', 'gateway worker started');
my $gw_pid = $dedicated->{pg_pid};
ok($pool->selectrow_array(q{SELECT presence_track('mist:room', 1, 'user:1', worker_id => 'gw-21')}),
	'tracked from the pool');
is(scalar $l->collect(PresenceTest::Listener::match(kind => 'join', worker_id => 'gw-21'), 1, 3), 1, 'join diff');

# Its dedicated connection ends: the entry leaves.
$admin->selectrow_array('SELECT pg_terminate_backend(?, 10000)', undef, $gw_pid);
is(scalar $l->collect(PresenceTest::Listener::match(kind => 'leave', worker_id => 'gw-21'), 1, 5), 1,
	'the entry leaves when the dedicated connection ends');
is($admin->selectrow_array('SELECT backend_pid FROM presence_ended_worker WHERE worker_id = ?', undef, 'gw-21'),
	$gw_pid, 'the ended registration is remembered with its pid');

# The pool goes on with the id: refused, and nothing registered.
for my $call (
	[ track => q{SELECT presence_track('mist:room', 2, 'user:2', worker_id => 'gw-21')} ],
	[ set_status => q{SELECT presence_set_status('mist:room', 1, 'busy', '', 0, 'gw-21')} ],
	[ heartbeat => q{SELECT presence_heartbeat('gw-21')} ])
{
	my ($state, $msg) = try_sql($pool, $call->[1]);
	is($state, '55000', "$call->[0] of the ended worker fails with 55000");
	like($msg, qr/worker_id "gw-21" is no longer registered: its connection ended/, "$call->[0]: the message says why");
	like($msg, qr/HINT:  Call presence_worker_start\(\) again/, "$call->[0]: the hint says what to do");
}
is($admin->selectrow_array(q{SELECT count(*) FROM tep_presence_worker WHERE worker_id = 'gw-21'}), 0,
	'the id was not registered again');
is($admin->selectrow_array(q{SELECT count(*) FROM tep_presence WHERE worker_id = 'gw-21'}), 0,
	'and has no entry');

# Registered again, it works.
my $dedicated2 = connect_db();
is($dedicated2->selectrow_array(q{SELECT presence_worker_start('gw-21')}), 'gw-21', 'started again');
ok($pool->selectrow_array(q{SELECT presence_track('mist:room', 2, 'user:2', worker_id => 'gw-21')}),
	'the pool tracks again');
is($admin->selectrow_array(q{SELECT count(*) FROM presence_ended_worker WHERE worker_id = 'gw-21'}), 0,
	'its end is forgotten');

# until_ts: milliseconds and int8's largest value are refused, typed or as
# an untyped parameter (node-postgres's and DBD::Pg's way).
my $ms = int(time * 1000) + 5000;
for my $case (
	[ 'epoch milliseconds', q{SELECT presence_set_status('mist:room', 2, 'busy', 'x', (extract(epoch FROM now()) * 1000)::bigint, 'gw-21')} ],
	[ 'int8 max', q{SELECT presence_set_status('mist:room', 2, 'busy', 'x', 9223372036854775807, 'gw-21')} ],
	[ 'Date.now() + 5000 untyped', q{SELECT presence_set_status(?, ?, ?, ?, ?, ?)}, 'mist:room', 2, 'busy', 'x', $ms, 'gw-21' ])
{
	my ($name, $sql, @bind) = @$case;
	my ($state, $msg) = try_sql($pool, $sql, @bind);
	is($state, '22023', "until_ts of $name refused with 22023");
	like($msg, qr/until_ts must be at most 100 years ahead/, "until_ts of $name: the message names it");
}
is($admin->selectrow_array(q{SELECT status_state FROM tep_presence WHERE worker_id = 'gw-21' AND fd = 2}),
	'available', 'nothing changed');

# An expiry given as a timestamptz, and as an interval: reset by the
# background worker within two ticks of its second, never before it.
$l->drain;
for my $case ([ 'a timestamptz', q{now() + interval '2 s'} ], [ 'an interval', q{interval '2 s'} ]) {
	my ($form, $expr) = @$case;
	ok($pool->selectrow_array(
			"SELECT presence_set_status('mist:room', 2, 'busy', '$form', $expr, 'gw-21')"),
		"status set with an expiry as $form");
	my $until = $admin->selectrow_array(
		q{SELECT status_until FROM tep_presence WHERE worker_id = 'gw-21' AND fd = 2});
	my $reset = $l->wait_for(sub {
			my $d = diff_of($_[0]);
			$d->{kind} eq 'status' && $d->{worker_id} eq 'gw-21' && $d->{state} eq 'available' }, 5);
	ok($reset, "$form: the status was reset") or next;
	cmp_ok($reset->{t}, '>=', $until, "$form: not before its time");
	cmp_ok($reset->{t} - $until, '<=', 2 * $interval, "$form: within two ticks (" . 2 * $interval . ' s) of it');
	diag(sprintf '%s: reset %s ms after until_ts', $form, ms($reset->{t} - $until));
}

is($pool->selectrow_array(q{SELECT presence_worker_stop('gw-21')}), 1, 'cleanup');

# The app role presence_app is cluster-wide: a second database's CREATE
# EXTENSION reuses it, DROP EXTENSION there leaves it (and this database's
# grants), and CREATE EXTENSION again grants it again.
$admin->do('CREATE ROLE mistakes_app LOGIN');
$admin->do('GRANT presence_app TO mistakes_app');
$admin->do('CREATE DATABASE app2');
my $admin2 = connect_db(db => 'app2');
$admin2->do('CREATE EXTENSION presence');
my $app = connect_db(user => 'mistakes_app');
my $app2 = connect_db(db => 'app2', user => 'mistakes_app');
ok($app->selectrow_array(q{SELECT presence_track('mist:room', 9, 'user:9')}), 'the app role tracks in postgres');
ok($app2->selectrow_array(q{SELECT presence_track('mist:room', 9, 'user:9')}), 'and in app2');
$app2->disconnect;
$admin2->do('DROP EXTENSION presence');
is($admin->selectrow_array(q{SELECT count(*) FROM pg_roles WHERE rolname = 'presence_app'}), 1,
	'DROP EXTENSION in app2 leaves the role');
ok($app->selectrow_array(q{SELECT presence_untrack('mist:room', 9)}), 'and its grants in postgres');
$admin2->do('CREATE EXTENSION presence');
$app2 = connect_db(db => 'app2', user => 'mistakes_app');
ok($app2->selectrow_array(q{SELECT presence_track('mist:room', 9, 'user:9')}), 'CREATE EXTENSION again grants it again');
my ($state) = try_sql($app2, q{SELECT presence_prune_dead_workers()});
is($state, '42501', 'the maintenance is not the app role\'s');
$app2->disconnect;
$app->disconnect;
$admin2->disconnect;
server_log_ok();
done_testing;
