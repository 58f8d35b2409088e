#!/usr/bin/perl
# A LISTEN client for presence diffs: decodes Tep's wire format
# <N>:presence:<topic><json> (N counts characters) and prints each diff as
# it arrives.  Connection from PGHOST/PGPORT/PGUSER/PGDATABASE.
#
#   perl examples/listen.pl [channel]
use strict;
use warnings;
use DBI;
use Encode qw(decode);
use IO::Select;
use JSON::PP;
use POSIX qw(strftime);
use Time::HiRes qw(time);

my $channel = shift // 'tep_broadcast';
$| = 1;
binmode STDOUT, ':encoding(UTF-8)';

my $dbh = DBI->connect('dbi:Pg:', undef, undef,
	{ RaiseError => 1, AutoCommit => 1, pg_enable_utf8 => 0 });
$dbh->do('LISTEN ' . $dbh->quote_identifier($channel));
print "listening on channel $channel\n";

my %icon = (join => '+', leave => '-', status => '~');
my $select = IO::Select->new($dbh->{pg_socket});
while (1) {
	$select->can_read;
	while (my $n = $dbh->pg_notifies) {
		my $payload = decode('UTF-8', $n->[2]);
		my ($len, $rest) = $payload =~ /^(\d+):(.*)$/s
		  or die "not a Tep payload: $payload\n";
		my $dtopic = substr($rest, 0, $len);
		my $diff = JSON::PP->new->decode(substr($rest, $len));
		my $who = $diff->{principal};
		$who .= " via agent $diff->{agent_id}" if $diff->{ekind} eq 'agent_for';
		my $status = $diff->{state};
		$status .= " \"$diff->{note}\"" if $diff->{note} ne '';
		$status .= sprintf(' for %ds', $diff->{until_ts} - int(time))
		  if $diff->{until_ts} > 0;
		printf "%s  %-19s seq %-3d %s %-6s %-34s fd %-3d %-8s %s\n",
		  strftime('%H:%M:%S', localtime), $dtopic, $diff->{seq},
		  $icon{ $diff->{kind} }, $diff->{kind}, $who, $diff->{fd},
		  $diff->{worker_id}, $status;
	}
}
